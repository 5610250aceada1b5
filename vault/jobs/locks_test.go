package jobs

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/maint"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestGCUnderObjectLock: a condemned pack whose lock has not ended is
// postponed, never asked to go, and deleted once the lock ends; a needed
// pack's lock is extended when it nears its end, and only then.
func TestGCUnderObjectLock(t *testing.T) {
	t0 := time.Now()
	clk := clocktest.New(t0)
	lk := storetest.NewLocking(t, clk)
	policy := store.LockPolicy{Mode: store.LockGovernance, Retention: 72 * time.Hour, Clock: clk,
		Match: func(name string) bool { return strings.HasPrefix(name, "repos/") }}
	data, err := store.WithObjectLock(lk, policy)
	if err != nil {
		t.Fatal(err)
	}
	sw, _ := store.As[store.Swapper](lk)
	d := Deps{Data: data, Meta: sw, Clock: clk}
	needed, unneeded := putPack(t, d, "needed"), putPack(t, d, "unneeded")
	putSnapshot(t, d, "db", t0, needed)
	o := GCOptions{Grace: time.Hour}
	run := func(at time.Duration) *GCReport {
		t.Helper()
		clk.Advance(t0.Add(at).Sub(clk.Now()))
		rep, err := CollectGarbage(ctx, d, tid, o)
		if err != nil {
			t.Fatalf("gc at +%s: %v", at, err)
		}
		return rep
	}
	if rep := run(2 * time.Hour); !slices.Equal(rep.Plan.NewMarks, []string{unneeded}) || rep.Locks.Due != 0 {
		t.Fatalf("+2h: %+v %+v", rep.Plan, rep.Locks)
	}
	if rep := run(4 * time.Hour); rep.Postponed != 1 || len(rep.Deleted) != 0 || !packExists(t, d, unneeded) {
		t.Fatalf("+4h: a locked pack was not postponed: %+v", rep)
	}
	rep := run(50 * time.Hour)
	if rep.Locks.Due != 1 || rep.Locks.Extended != 1 || len(rep.Deleted) != 0 {
		t.Fatalf("+50h: %+v %+v", rep, rep.Locks)
	}
	if l, _ := store.LockInfo(ctx, data, packKey(tid, needed)); !l.Until.Equal(t0.Add(122*time.Hour).UTC()) && l.Until.Before(t0.Add(121*time.Hour)) {
		t.Fatalf("the needed pack is locked until %s", l.Until)
	}
	if l, _ := store.LockInfo(ctx, data, packKey(tid, unneeded)); l.Until.After(t0.Add(73 * time.Hour)) {
		t.Fatalf("an unneeded pack's lock was extended to %s", l.Until)
	}
	if rep := run(51 * time.Hour); rep.Locks.Due != 0 {
		t.Fatalf("+51h: extended again at once: %+v", rep.Locks)
	}
	rep = run(73 * time.Hour)
	if !slices.Equal(rep.Deleted, []string{unneeded}) || packExists(t, d, unneeded) || !packExists(t, d, needed) {
		t.Fatalf("+73h: %+v", rep)
	}
}

// TestPruneUnderObjectLock: snapshots retention drops while their objects
// are locked wait, recorded, and go once the lock ends; they are not
// decided twice in between.
func TestPruneUnderObjectLock(t *testing.T) {
	t0 := time.Now()
	clk := clocktest.New(t0)
	lk := storetest.NewLocking(t, clk)
	data, err := store.WithObjectLock(lk, store.LockPolicy{Mode: store.LockCompliance, Retention: 48 * time.Hour, Clock: clk,
		Match: func(name string) bool { return strings.HasPrefix(name, "repos/") }})
	if err != nil {
		t.Fatal(err)
	}
	sw, _ := store.As[store.Swapper](lk)
	d := Deps{Data: data, Meta: sw, Clock: clk}
	for i := range 3 {
		putSnapshot(t, d, "web01", t0.Add(time.Duration(i)*time.Hour), putPack(t, d, string(rune('a'+i))))
	}
	o := PruneOptions{Policies: maint.Policies{Default: maint.Policy{Last: 1}}}
	if rep, err := Prune(ctx, d, tid, o); err != nil || rep.Removed != 0 {
		t.Fatalf("prune under the lock: %+v %v", rep, err)
	}
	clk.Advance(time.Hour)
	if rep, err := Prune(ctx, d, tid, o); err != nil || rep.Waiting != 2 || rep.Removed != 0 {
		t.Fatalf("prune again under the lock: %+v %v", rep, err)
	}
	clk.Advance(48 * time.Hour)
	rep, err := Prune(ctx, d, tid, o)
	if err != nil || rep.Removed != 2 {
		t.Fatalf("prune after the lock: %+v %v", rep, err)
	}
	if objs, _ := listReceipts(ctx, d.Data, tid); len(objs) != 1 {
		t.Fatalf("%d receipts left, want 1", len(objs))
	}
}
