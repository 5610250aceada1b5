package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

const tid = "0123456789abcdef01234567"

var ctx = context.Background()

// vaultStore is a local vault store with a fake clock well ahead of the
// files' real modification times.
func vaultStore(t *testing.T) (Deps, *clocktest.Clock) {
	t.Helper()
	l, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	sw, ok := store.As[store.Swapper](l)
	if !ok {
		t.Fatal("local store has no Swapper")
	}
	clk := clocktest.New(time.Now().Add(25 * time.Hour))
	return Deps{Data: l, Meta: sw, Clock: clk}, clk
}

func putPack(t *testing.T, d Deps, seed string) string {
	t.Helper()
	b := []byte("pack " + seed)
	sum := sha256.Sum256(b)
	id := hex.EncodeToString(sum[:])
	if err := d.Data.Put(ctx, "repos/"+tid+"/data/"+id[:2]+"/"+id, store.Bytes(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	return id
}

// putSnapshot stores a snapshot object and its receipt naming packs; it
// returns the receipt's object name.
func putSnapshot(t *testing.T, d Deps, name string, at time.Time, packs ...string) string {
	t.Helper()
	snap := []byte("snapshot " + name + at.String())
	sum := sha256.Sum256(snap)
	sid := hex.EncodeToString(sum[:])
	packs = slices.Sorted(slices.Values(packs))
	rc := &vaultapi.Receipt{Version: 1, Snapshot: sid, Name: name, Time: at, Source: "image",
		Disks: []vaultapi.ReceiptDisk{{Size: 1 << 20, DataBytes: 1 << 10}}, Packs: packs}
	b, err := rc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	rs := sha256.Sum256(b)
	rname := "receipts/" + hex.EncodeToString(rs[:])
	for n, body := range map[string][]byte{rname: b, "snapshots/" + sid: snap} {
		if err := d.Data.Put(ctx, "repos/"+tid+"/"+n, store.Bytes(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	return rname
}

func packExists(t *testing.T, d Deps, id string) bool {
	t.Helper()
	_, err := d.Data.Stat(ctx, "repos/"+tid+"/data/"+id[:2]+"/"+id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// TestCollectGarbageDeletesOnlyUnneededPacksAfterTheGrace runs GC over a
// tenant whose second snapshot's receipt was removed: the pack only it
// needed is marked, kept through the grace, then deleted; shared and
// still-needed packs stay.
func TestCollectGarbageDeletesOnlyUnneededPacksAfterTheGrace(t *testing.T) {
	d, clk := vaultStore(t)
	shared, only1, only2 := putPack(t, d, "shared"), putPack(t, d, "one"), putPack(t, d, "two")
	putSnapshot(t, d, "web01", clk.Now(), shared, only1)
	r2 := putSnapshot(t, d, "web01", clk.Now().Add(time.Hour), shared, only2)
	// Retention forgot snapshot 2: its receipt and snapshot go.
	if err := d.Data.Delete(ctx, "repos/"+tid+"/"+r2); err != nil {
		t.Fatal(err)
	}
	removeSnapshotsWithoutReceipt(t, d)

	rep, err := CollectGarbage(ctx, d, tid, GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Plan.NewMarks, []string{only2}) || rep.Plan.Needed != 2 || len(rep.Deleted) != 0 {
		t.Fatalf("first run: %+v", rep)
	}
	clk.Advance(23 * time.Hour)
	if rep, err = CollectGarbage(ctx, d, tid, GCOptions{}); err != nil || len(rep.Deleted) != 0 {
		t.Fatalf("inside the grace: %+v %v", rep, err)
	}
	clk.Advance(2 * time.Hour)
	dry, err := CollectGarbage(ctx, d, tid, GCOptions{DryRun: true})
	if err != nil || !slices.Equal(dry.Plan.Condemned, []string{only2}) || !packExists(t, d, only2) {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	rep, err = CollectGarbage(ctx, d, tid, GCOptions{})
	if err != nil || !slices.Equal(rep.Deleted, []string{only2}) {
		t.Fatalf("after the grace: %+v %v", rep, err)
	}
	if packExists(t, d, only2) || !packExists(t, d, shared) || !packExists(t, d, only1) {
		t.Fatal("the wrong packs were deleted")
	}
	st, err := LoadGCState(ctx, d.Meta, tid)
	if err != nil || len(st.Deleted) != 1 || len(st.Deleting) != 0 || len(st.Marked) != 0 {
		t.Fatalf("state after deletion: %+v %v", st, err)
	}
}

func removeSnapshotsWithoutReceipt(t *testing.T, d Deps) {
	t.Helper()
	sub, _ := store.ReadOnlySub(d.Data, "repos/"+tid+"/")
	have := map[string]bool{}
	_ = sub.List(ctx, "receipts/", func(i store.Info) error {
		b, _ := store.ReadAll(ctx, sub, i.Name)
		rc, err := vaultapi.ParseReceipt(b)
		if err != nil {
			t.Fatal(err)
		}
		have[rc.Snapshot] = true
		return nil
	})
	_ = sub.List(ctx, "snapshots/", func(i store.Info) error {
		if !have[strings.TrimPrefix(i.Name, "snapshots/")] {
			return d.Data.Delete(ctx, "repos/"+tid+"/"+i.Name)
		}
		return nil
	})
}

// TestClaimBringsAMarkedPackBack: a receipt stored while a pack is marked
// keeps it; one that names a condemned pack is refused.
func TestClaimBringsAMarkedPackBack(t *testing.T) {
	d, clk := vaultStore(t)
	p := putPack(t, d, "p")
	if _, err := CollectGarbage(ctx, d, tid, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	// A backup that began earlier names p now.
	if rej, err := ClaimPacks(ctx, d.Meta, tid, []string{p}); err != nil || rej != nil {
		t.Fatalf("claim: %v %v", rej, err)
	}
	putSnapshot(t, d, "db", clk.Now(), p)
	clk.Advance(48 * time.Hour)
	rep, err := CollectGarbage(ctx, d, tid, GCOptions{})
	if err != nil || len(rep.Deleted) != 0 || !packExists(t, d, p) {
		t.Fatalf("a claimed pack was collected: %+v %v", rep, err)
	}

	// An unneeded pack, condemned, then named by a late receipt: refused.
	q := putPack(t, d, "q")
	clk.Advance(25 * time.Hour) // q is now past the grace: it is marked
	if _, err := CollectGarbage(ctx, d, tid, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	clk.Advance(25 * time.Hour)
	if _, err := CollectGarbage(ctx, d, tid, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	rej, err := ClaimPacks(ctx, d.Meta, tid, []string{p, q})
	if err != nil || rej == nil || !slices.Equal(rej.Deleting, []string{q}) {
		t.Fatalf("a receipt naming a deleted pack: %+v %v", rej, err)
	}
}

// TestCollectGarbageRefusesSnapshotsWithoutReceipts: a snapshot an older
// agent wrote has no receipt, so nothing can be known to be unneeded.
func TestCollectGarbageRefusesSnapshotsWithoutReceipts(t *testing.T) {
	d, _ := vaultStore(t)
	p := putPack(t, d, "p")
	snap := []byte("legacy")
	sum := sha256.Sum256(snap)
	if err := d.Data.Put(ctx, fmt.Sprintf("repos/%s/snapshots/%x", tid, sum), store.Bytes(snap), int64(len(snap))); err != nil {
		t.Fatal(err)
	}
	_, err := CollectGarbage(ctx, d, tid, GCOptions{})
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "no receipt") {
		t.Fatalf("want a refusal naming the missing receipts, got %v", err)
	}
	if st, _ := LoadGCState(ctx, d.Meta, tid); st != nil || !packExists(t, d, p) {
		t.Fatalf("a refused run changed something: %+v", st)
	}
}

// TestLease: one holder at a time; an expired lease passes to another.
func TestLease(t *testing.T) {
	d, clk := vaultStore(t)
	now := clk.Now()
	for _, c := range []struct {
		holder string
		at     time.Duration
		want   bool
	}{{"a", 0, true}, {"b", time.Minute, false}, {"a", 2 * time.Minute, true}, {"b", 2*time.Hour + time.Minute, true}, {"a", 2*time.Hour + 2*time.Minute, false}} {
		got, err := TakeLease(ctx, d.Meta, "maintenance", c.holder, now.Add(c.at), time.Hour)
		if err != nil || got != c.want {
			t.Fatalf("%s at +%s: %v %v, want %v", c.holder, c.at, got, err, c.want)
		}
	}
	if err := ReleaseLease(ctx, d.Meta, "maintenance", "b"); err != nil {
		t.Fatal(err)
	}
	if got, err := TakeLease(ctx, d.Meta, "maintenance", "a", now.Add(2*time.Hour+3*time.Minute), time.Hour); err != nil || !got {
		t.Fatalf("after release: %v %v", got, err)
	}
}
