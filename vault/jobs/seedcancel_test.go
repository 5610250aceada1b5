package jobs

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/seedtest"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/registry"
)

// TestCancelSeed: a travelling seed turns cancelled with its reason and
// time, the lost list names exactly the seed's packs the vault lacked, a
// second cancel changes nothing, an imported or unknown seed is refused,
// and the one-in-transit slot is free again.
func TestCancelSeed(t *testing.T) {
	d, clk := vaultStore(t)
	key := seedtest.Key(t)
	k := seedTenant(key)
	held := putPack(t, d, "held by the vault")
	a, b := fakePackID("a"), fakePackID("b")
	s1 := seedtest.New(t, key, tid, held, a, b)
	id := s1.Manifest.ID
	if _, err := RegisterSeed(ctx, d.Meta, d.Data, k, s1.Body, s1.Sig, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := LostPacks(ctx, d.Data, tid, id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a lost list before the cancel: %v", err)
	}
	wantCode(t, mustFail(CancelSeed(ctx, d.Meta, d.Data, tid, strings.Repeat("9", 64), "", clk.Now())), vaultapi.CodeNotFound)
	wantCode(t, mustFail(CancelSeed(ctx, d.Meta, d.Data, tid, id, "bell\a", clk.Now())), vaultapi.CodeBadRequest)

	at := clk.Now()
	info, err := CancelSeed(ctx, d.Meta, d.Data, tid, id, "  the courier lost it\t", at)
	if err != nil || info.State != vaultapi.SeedCancelled || info.Reason != "the courier lost it" || info.Cancelled == nil || !info.Cancelled.Equal(at) {
		t.Fatalf("cancel: %+v %v", info, err)
	}
	lost, err := LostPacks(ctx, d.Data, tid, id)
	if want := slices.Sorted(slices.Values([]string{a, b})); err != nil || lost.Seed != id || !slices.Equal(lost.Packs, want) {
		t.Fatalf("lost list %+v %v, want %v", lost, err, want)
	}
	again, err := CancelSeed(ctx, d.Meta, d.Data, tid, id, "another reason", at.Add(time.Hour))
	if err != nil || again.Reason != "the courier lost it" || !again.Cancelled.Equal(at) {
		t.Fatalf("cancel again: %+v %v", again, err)
	}
	book, _ := LoadSeedBook(ctx, d.Meta, tid)
	if book.Travelling() != nil || !book.Lost(id) || book.InTransit(id) {
		t.Fatalf("book after the cancel: %+v", book.Seeds)
	}
	ve := wantCode(t, mustFail(MarkSeedImported(ctx, d.Meta, tid, id, &vaultapi.SeedReport{Clean: true})), vaultapi.CodeSeedCancelled)
	if want := "seed " + id[:12] + " was cancelled on " + at.UTC().Format(time.DateOnly) + " (the courier lost it): export a new seed"; ve.Message != want {
		t.Errorf("mark imported after the cancel:\n%s\nwant\n%s", ve.Message, want)
	}

	s2 := seedtest.New(t, key, tid, fakePackID("c"))
	if _, err := RegisterSeed(ctx, d.Meta, d.Data, k, s2.Body, s2.Sig, clk.Now()); err != nil {
		t.Fatalf("a new seed after the cancel: %v", err)
	}
	if _, err := MarkSeedImported(ctx, d.Meta, tid, s2.Manifest.ID, &vaultapi.SeedReport{Clean: true}); err != nil {
		t.Fatal(err)
	}
	ve = wantCode(t, mustFail(CancelSeed(ctx, d.Meta, d.Data, tid, s2.Manifest.ID, "", clk.Now())), vaultapi.CodeBadRequest)
	if !strings.Contains(ve.Message, "was imported on") {
		t.Errorf("cancel an imported seed: %s", ve.Message)
	}
}

// TestImportRefusesACancelledSeed: the import of a cancelled seed stops
// at once, naming the seed, the date and the reason, storing nothing.
func TestImportRefusesACancelledSeed(t *testing.T) {
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 3)
	s, err := seed.Open(ts.dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RegisterSeed(ctx, e.sw, e.data, e.tenant, s.Body, s.Sig, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := CancelSeed(ctx, e.sw, e.data, tid, ts.id, "never sent", e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = ImportSeed(ctx, e.options(ts.dir))
	ve := wantCode(t, err, vaultapi.CodeSeedCancelled)
	if want := "seed " + ts.id[:12] + " was cancelled on 2026-12-06 (never sent): export a new seed"; ve.Message != want {
		t.Errorf("import:\n%s\nwant\n%s", ve.Message, want)
	}
	n := 0
	_ = e.data.List(ctx, "repos/", func(store.Info) error { n++; return nil })
	if n != 0 {
		t.Errorf("the refused import stored %d objects", n)
	}
}

// TestLostSnapshots: once its seed is cancelled, a snapshot that waited
// on it is lost: restores and drills refuse it naming the seed, the date
// and the reason; status never counts it as safe nor waiting (a VM with
// only lost snapshots is absent), and counts it as lost; the keyless
// check lists it as lost without counting an error.
func TestLostSnapshots(t *testing.T) {
	d, clk := vaultStore(t)
	now := clk.Now()
	stored := putPack(t, d, strings.Repeat("a pack big enough for the check ", 4))
	a := fakePackID("a")
	id := travellingSeed(t, d, stored, a)
	lostWeb := putSeedSnapshot(t, d, "web01", now.Add(-time.Hour), id, stored, a)
	putSeedSnapshot(t, d, "web01", now.Add(-30*time.Hour), "", stored) // late but safe
	lostDB := putSeedSnapshot(t, d, "db01", now.Add(-time.Hour), id, stored, a)
	if err := d.Data.Put(ctx, "repos/"+tid+"/config", store.Bytes([]byte("{}")), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := CancelSeed(ctx, d.Meta, d.Data, tid, id, "disk broken beyond its parity", now); err != nil {
		t.Fatal(err)
	}

	ve := wantCode(t, SnapshotWait(ctx, d.Meta, d.Data, tid, lostWeb), vaultapi.CodeSeedCancelled)
	want := "snapshot " + lostWeb[:12] + " needed seed " + id[:12] + ", cancelled on " + now.UTC().Format(time.DateOnly) +
		" (disk broken beyond its parity): it cannot be restored"
	if !strings.HasPrefix(ve.Message, want) {
		t.Errorf("restore refusal:\n%s\nwant\n%s", ve.Message, want)
	}
	w, err := LoadSeedWaits(ctx, d.Meta, d.Data, tid)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Err(lostDB); err == nil || !strings.Contains(err.Error(), "cannot be restored") {
		t.Errorf("drill refusal: %v", err)
	}

	rep, err := (&StatusReader{Data: d.Data, Meta: d.Meta}).Status(ctx, []*registry.Tenant{seedTenant(seedtest.Key(t))}, now)
	if err != nil {
		t.Fatal(err)
	}
	vms := map[string]*VMStatus{}
	for _, v := range rep.Tenants[0].VMs {
		vms[v.VM] = v
	}
	if v := vms["web01"]; v.State != StateLate || v.SeedsLost != 1 || v.SeedsWaiting != 0 || v.Snapshots != 1 || !v.Newest.Equal(now.Add(-30*time.Hour)) {
		t.Errorf("web01: %+v", v)
	}
	if v := vms["db01"]; v.State != StateAbsent || v.SeedsLost != 1 || v.SeedsWaiting != 0 || !v.Newest.IsZero() {
		t.Errorf("db01: %+v", v)
	}
	if rep.Waiting != 0 || rep.Absent != 1 || rep.Late != 1 {
		t.Errorf("report: late %d waiting %d absent %d", rep.Late, rep.Waiting, rep.Absent)
	}

	ts, err := LoadTenantSeeds(ctx, d.Meta, NewSeedPacks(d.Data), tid)
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := store.ReadOnlySub(d.Data, tenantPrefix(tid))
	kr, err := CheckKeyless(ctx, sub, KeylessOptions{Receipts: Receipts{Seeds: ts}})
	if err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, p := range kr.Problems {
		if p.Kind == ProblemLost {
			lost++
			if !strings.Contains(p.Message, "travelled on seed "+id[:12]+", cancelled on") {
				t.Errorf("lost finding: %s", p.Message)
			}
		}
	}
	if kr.Lost != 2 || lost != 2 || kr.Waiting != 0 || kr.Errors() != 0 {
		t.Errorf("check: lost %d (%d listed), waiting %d, errors %d: %+v", kr.Lost, lost, kr.Waiting, kr.Errors(), kr.Problems)
	}
}
