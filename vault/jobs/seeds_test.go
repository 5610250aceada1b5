package jobs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/seedtest"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/registry"
)

// seedTenant is tenant tid with signing key k.
func seedTenant(k *crypto.SigningKey) *registry.Tenant {
	return &registry.Tenant{ID: tid, Name: "acme", State: vaultapi.StateActive, SigningKey: k.Public(),
		RPO: &registry.RPO{Default: 24 * time.Hour}}
}

func fakePackID(s string) string {
	sum := sha256.Sum256([]byte("travelling " + s))
	return hex.EncodeToString(sum[:])
}

func wantCode(t *testing.T, err error, code string) *vaultapi.Error {
	t.Helper()
	var ve *vaultapi.Error
	if !errors.As(err, &ve) || ve.Code != code {
		t.Fatalf("got %v, want a %s error", err, code)
	}
	return ve
}

// TestRegisterSeed: a seed registers once (the same seed again returns its
// first record), one travels at a time, and a manifest of another tenant,
// tampered with, signed by another key, or of a tenant without a key is
// refused, storing nothing.
func TestRegisterSeed(t *testing.T) {
	d, clk := vaultStore(t)
	k := seedTenant(seedtest.Key(t))
	key := seedtest.Key(t)
	k.SigningKey = key.Public()
	s1 := seedtest.New(t, key, tid, fakePackID("a"), fakePackID("b"))
	now := clk.Now()
	info, err := RegisterSeed(ctx, d.Meta, d.Data, k, s1.Body, s1.Sig, now)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != s1.Manifest.ID || info.State != vaultapi.SeedTravelling || info.Objects != 2 || info.Bytes != 8192 ||
		!info.Registered.Equal(now) || info.Host != "agent-1" || info.Signer != crypto.SigningKeyFingerprint(key.Public()) {
		t.Fatalf("registered: %+v", info)
	}
	again, err := RegisterSeed(ctx, d.Meta, d.Data, k, s1.Body, s1.Sig, now.Add(time.Hour))
	if err != nil || !again.Registered.Equal(now) {
		t.Fatalf("the same seed again: %+v %v", again, err)
	}
	_, body, sig, err := SeedManifest(ctx, d.Data, tid, s1.Manifest.ID)
	if err != nil || !bytes.Equal(body, s1.Body) || !bytes.Equal(sig, s1.Sig) {
		t.Fatalf("stored manifest: %v", err)
	}

	s2 := seedtest.New(t, key, tid, fakePackID("c"))
	ve := wantCode(t, mustFail(RegisterSeed(ctx, d.Meta, d.Data, k, s2.Body, s2.Sig, now)), vaultapi.CodeSeedInTransit)
	if !strings.Contains(ve.Message, s1.Manifest.ID[:12]) || !strings.Contains(ve.Message, "import that one first") {
		t.Errorf("in transit: %s", ve.Message)
	}

	other := seedtest.New(t, key, "fedcba9876543210fedcba98", fakePackID("d"))
	ve = wantCode(t, mustFail(RegisterSeed(ctx, d.Meta, d.Data, k, other.Body, other.Sig, now)), vaultapi.CodeBadSeed)
	if !strings.Contains(ve.Message, "belongs to tenant") {
		t.Errorf("another tenant's seed: %s", ve.Message)
	}
	tampered := bytes.Replace(s2.Body, []byte(`"agent-1"`), []byte(`"agent-2"`), 1)
	wantCode(t, mustFail(RegisterSeed(ctx, d.Meta, d.Data, k, tampered, s2.Sig, now)), vaultapi.CodeBadSeed)
	foreignKey := seedtest.New(t, seedtest.Key(t), tid, fakePackID("e"))
	wantCode(t, mustFail(RegisterSeed(ctx, d.Meta, d.Data, k, foreignKey.Body, foreignKey.Sig, now)), vaultapi.CodeBadSeed)
	keyless := *k
	keyless.SigningKey = ""
	wantCode(t, mustFail(RegisterSeed(ctx, d.Meta, d.Data, &keyless, s2.Body, s2.Sig, now)), vaultapi.CodeNoSigningKey)

	book, err := LoadSeedBook(ctx, d.Meta, tid)
	if err != nil || len(book.Seeds) != 1 || book.Travelling().ID != s1.Manifest.ID {
		t.Fatalf("book after refusals: %+v %v", book, err)
	}
	for _, s := range []*seedtest.Signed{s2, other, foreignKey} {
		if _, err := d.Data.Stat(ctx, seedManifestKey(tid, s.Manifest.ID)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a refused seed's manifest was stored: %v", err)
		}
	}
}

func mustFail[T any](_ T, err error) error { return err }

// TestImportAndConfirmSeed: only an imported seed with a clean report can
// be confirmed; marking again keeps the first report; once imported, the
// next seed may register.
func TestImportAndConfirmSeed(t *testing.T) {
	d, clk := vaultStore(t)
	key := seedtest.Key(t)
	k := seedTenant(key)
	s1 := seedtest.New(t, key, tid, fakePackID("a"))
	if _, err := RegisterSeed(ctx, d.Meta, d.Data, k, s1.Body, s1.Sig, clk.Now()); err != nil {
		t.Fatal(err)
	}
	id := s1.Manifest.ID
	wantCode(t, mustFail(ConfirmSeed(ctx, d.Meta, tid, id, clk.Now())), vaultapi.CodeBadRequest)
	wantCode(t, mustFail(ConfirmSeed(ctx, d.Meta, tid, strings.Repeat("9", 64), clk.Now())), vaultapi.CodeNotFound)
	wantCode(t, mustFail(MarkSeedImported(ctx, d.Meta, tid, strings.Repeat("9", 64), &vaultapi.SeedReport{})), vaultapi.CodeNotFound)

	clean := &vaultapi.SeedReport{Seed: id, Tenant: tid, Objects: 1, Clean: true}
	info, err := MarkSeedImported(ctx, d.Meta, tid, id, clean)
	if err != nil || info.State != vaultapi.SeedImported || info.Report == nil || !info.Report.Clean {
		t.Fatalf("imported: %+v %v", info, err)
	}
	if info, _ := MarkSeedImported(ctx, d.Meta, tid, id, &vaultapi.SeedReport{Seed: id}); !info.Report.Clean {
		t.Errorf("marking again replaced the first report: %+v", info.Report)
	}
	at := clk.Now()
	info, err = ConfirmSeed(ctx, d.Meta, tid, id, at)
	if err != nil || info.Confirmed == nil || !info.Confirmed.Equal(at) {
		t.Fatalf("confirm: %+v %v", info, err)
	}
	if info, _ := ConfirmSeed(ctx, d.Meta, tid, id, at.Add(time.Hour)); !info.Confirmed.Equal(at) {
		t.Errorf("confirming again moved the time: %v", info.Confirmed)
	}

	// The next seed registers; its import with damage left is not clean.
	s2 := seedtest.New(t, key, tid, fakePackID("b"))
	if _, err := RegisterSeed(ctx, d.Meta, d.Data, k, s2.Body, s2.Sig, clk.Now()); err != nil {
		t.Fatalf("a seed after the first was imported: %v", err)
	}
	if _, err := MarkSeedImported(ctx, d.Meta, tid, s2.Manifest.ID, &vaultapi.SeedReport{Seed: s2.Manifest.ID}); err != nil {
		t.Fatal(err)
	}
	ve := wantCode(t, mustFail(ConfirmSeed(ctx, d.Meta, tid, s2.Manifest.ID, clk.Now())), vaultapi.CodeBadRequest)
	if !strings.Contains(ve.Message, "keep the source") {
		t.Errorf("unclean confirm: %s", ve.Message)
	}
}

// putSeedSnapshot stores a snapshot and its receipt naming packs and seed;
// it returns the snapshot's ID.
func putSeedSnapshot(t *testing.T, d Deps, name string, at time.Time, seed string, packs ...string) string {
	t.Helper()
	snap := []byte("snapshot " + name + at.String() + seed)
	sid := hex.EncodeToString(shaSum(snap))
	rc := &vaultapi.Receipt{Version: 1, Snapshot: sid, Name: name, Time: at, Source: "image",
		Disks: []vaultapi.ReceiptDisk{{Size: 1 << 20, DataBytes: 1 << 10}}, Packs: slices.Sorted(slices.Values(packs)), Seed: seed}
	b, err := rc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for n, body := range map[string][]byte{"receipts/" + hex.EncodeToString(shaSum(b)): b, "snapshots/" + sid: snap} {
		if err := d.Data.Put(ctx, "repos/"+tid+"/"+n, store.Bytes(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	return sid
}

func shaSum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// travellingSeed registers a seed of packs for tid and returns its ID.
func travellingSeed(t *testing.T, d Deps, packs ...string) string {
	t.Helper()
	key := seedtest.Key(t)
	s := seedtest.New(t, key, tid, packs...)
	if _, err := RegisterSeed(ctx, d.Meta, d.Data, seedTenant(key), s.Body, s.Sig, time.Now()); err != nil {
		t.Fatal(err)
	}
	return s.Manifest.ID
}

// TestHoldingAndPendingPack: a seed in transit excuses exactly the packs
// it holds; an unknown or imported seed excuses none.
func TestHoldingAndPendingPack(t *testing.T) {
	d, _ := vaultStore(t)
	a, b, c := fakePackID("a"), fakePackID("b"), fakePackID("c")
	id := travellingSeed(t, d, a, b)
	ts, err := LoadTenantSeeds(ctx, d.Meta, NewSeedPacks(d.Data), tid)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := ts.Holding(ctx, id, []string{a, b}); err != nil || s.ID != id {
		t.Fatalf("held packs: %v %v", s, err)
	}
	var ref *SeedRefusal
	if _, err := ts.Holding(ctx, id, []string{a, c}); !errors.As(err, &ref) || !strings.Contains(ref.Reason, "does not hold 1 of them either ("+c+")") {
		t.Errorf("a pack not on the seed: %v", err)
	}
	if _, err := ts.Holding(ctx, strings.Repeat("7", 64), []string{a}); !errors.As(err, &ref) || !strings.Contains(ref.Reason, "not registered") {
		t.Errorf("an unknown seed: %v", err)
	}
	if s, err := ts.PendingPack(ctx, b); err != nil || s == nil || s.ID != id {
		t.Errorf("pending pack: %v %v", s, err)
	}
	if s, err := ts.PendingPack(ctx, c); err != nil || s != nil {
		t.Errorf("a pack on no seed: %v %v", s, err)
	}
	if _, err := MarkSeedImported(ctx, d.Meta, tid, id, &vaultapi.SeedReport{Clean: true}); err != nil {
		t.Fatal(err)
	}
	ts, _ = LoadTenantSeeds(ctx, d.Meta, NewSeedPacks(d.Data), tid)
	if _, err := ts.Holding(ctx, id, []string{a}); !errors.As(err, &ref) || !strings.Contains(ref.Reason, "imported already") {
		t.Errorf("an imported seed: %v", err)
	}
	if s, _ := ts.PendingPack(ctx, a); s != nil {
		t.Errorf("a pack of an imported seed is still pending: %+v", s)
	}
}

// TestSeedWaitsUntilImport: a snapshot whose receipt names a seed in
// transit (or an unknown seed) is refused by SnapshotWait and SeedWaits,
// counts as waiting in status and is reported waiting by the keyless
// check; after the import it counts as ok, and the check then demands its
// packs.
func TestSeedWaitsUntilImport(t *testing.T) {
	d, clk := vaultStore(t)
	now := clk.Now()
	stored := putPack(t, d, strings.Repeat("a pack big enough for the check ", 4))
	a := fakePackID("a")
	id := travellingSeed(t, d, a)
	waiting := putSeedSnapshot(t, d, "web01", now.Add(-time.Hour), id, stored, a)
	older := putSeedSnapshot(t, d, "web01", now.Add(-50*time.Hour), "", stored) // absent but for the seed
	unknown := putSeedSnapshot(t, d, "db01", now.Add(-time.Hour), strings.Repeat("7", 64), stored)
	if err := d.Data.Put(ctx, "repos/"+tid+"/config", store.Bytes([]byte("{}")), 2); err != nil {
		t.Fatal(err)
	}

	err := SnapshotWait(ctx, d.Meta, d.Data, tid, waiting)
	ve := wantCode(t, err, vaultapi.CodeSeedPending)
	if !strings.Contains(ve.Message, id[:12]) || !strings.Contains(ve.Message, "exported 2026-12-01 from agent-1") || ve.Status != 409 {
		t.Errorf("waiting snapshot: %+v", ve)
	}
	if err := SnapshotWait(ctx, d.Meta, d.Data, tid, older); err != nil {
		t.Errorf("a snapshot without a seed: %v", err)
	}
	ve = wantCode(t, SnapshotWait(ctx, d.Meta, d.Data, tid, unknown), vaultapi.CodeSeedPending)
	if !strings.Contains(ve.Message, "not registered") {
		t.Errorf("unknown seed: %s", ve.Message)
	}
	w, err := LoadSeedWaits(ctx, d.Meta, d.Data, tid)
	if err != nil || w.Err(waiting) == nil || w.Err(unknown) == nil || w.Err(older) != nil {
		t.Fatalf("seed waits: %v", err)
	}

	r := &StatusReader{Data: d.Data, Meta: d.Meta}
	web := func() *VMStatus {
		rep, err := r.Status(ctx, []*registry.Tenant{seedTenant(seedtest.Key(t))}, now)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range rep.Tenants[0].VMs {
			if v.VM == "web01" {
				return v
			}
		}
		t.Fatal("no web01")
		return nil
	}
	if v := web(); v.State != StateWaiting || v.SeedsWaiting != 1 || v.Snapshots != 1 {
		t.Errorf("before the import: %+v", v)
	}
	keyless := func() *KeylessReport {
		ts, err := LoadTenantSeeds(ctx, d.Meta, NewSeedPacks(d.Data), tid)
		if err != nil {
			t.Fatal(err)
		}
		sub, _ := store.ReadOnlySub(d.Data, tenantPrefix(tid))
		rep, err := CheckKeyless(ctx, sub, KeylessOptions{Receipts: Receipts{Seeds: ts}})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := keyless(); rep.Waiting != 1 || rep.Errors() != 0 {
		t.Errorf("check before the import: waiting %d, errors %d: %+v", rep.Waiting, rep.Errors(), rep.Problems)
	}

	if _, err := MarkSeedImported(ctx, d.Meta, tid, id, &vaultapi.SeedReport{Clean: true}); err != nil {
		t.Fatal(err)
	}
	if err := SnapshotWait(ctx, d.Meta, d.Data, tid, waiting); err != nil {
		t.Errorf("after the import: %v", err)
	}
	if v := web(); v.State != StateOK || v.SeedsWaiting != 0 || v.Snapshots != 2 {
		t.Errorf("after the import: %+v", v)
	}
	// The seed's pack never arrived: now it is an error.
	if rep := keyless(); rep.Waiting != 0 || rep.Errors() != 1 || !strings.Contains(rep.Problems[0].Message, "imported already") {
		t.Errorf("check after the import: %+v", rep.Problems)
	}
}
