package jobs

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/maint"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/vault/ledger"
)

// killed is what the AfterPhase hook panics with to stop a job there, as
// a kill would.
type killed string

func runKilled(t *testing.T, phase string, fn func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil && r != killed(phase) {
			panic(r)
		}
	}()
	fn()
	t.Fatalf("the job never reached %s", phase)
}

// TestPruneKeepsWhatThePolicySaysAndResumes: ten nightly snapshots under
// keep-last 3: a prune killed after deleting finishes its batch on the
// next run, seven snapshots and receipts go, the ledger forgets the batch
// once, and GC then collects the packs only they needed.
func TestPruneKeepsWhatThePolicySaysAndResumes(t *testing.T) {
	d, clk := vaultStore(t)
	led, err := ledger.New(d.Data, d.Data, clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Ledger = led
	shared := putPack(t, d, "shared")
	var own []string
	for i := range 10 {
		p := putPack(t, d, "night"+string(rune('a'+i)))
		own = append(own, p)
		putSnapshot(t, d, "web01", clk.Now().Add(time.Duration(i-10)*24*time.Hour), shared, p)
	}
	opts := PruneOptions{Policies: maint.Policies{Default: maint.Policy{Last: 3}}}
	dry, err := Prune(ctx, d, tid, PruneOptions{Policies: opts.Policies, DryRun: true})
	if err != nil || dry.Removed != 7 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	kd := d
	kd.AfterPhase = func(p string) {
		if p == "pruned" {
			panic(killed(p))
		}
	}
	runKilled(t, "pruned", func() { _, _ = Prune(ctx, kd, tid, opts) })
	if st, _ := LoadGCState(ctx, d.Meta, tid); st == nil || len(st.Pruning) != 7 {
		t.Fatalf("the killed prune left %+v", st)
	}
	rep, err := Prune(ctx, d, tid, opts)
	if err != nil || rep.Removed != 7 {
		t.Fatalf("the resumed prune: %+v %v", rep, err)
	}
	u, err := led.Usage(ctx, tid)
	if err != nil || len(u.Forgotten) != 1 || !strings.HasPrefix(u.Forgotten[0], "prune-") {
		t.Fatalf("the ledger forgot %v (%v), want one prune batch", u.Forgotten, err)
	}
	objs, err := listReceipts(ctx, d.Data, tid)
	if err != nil || len(objs) != 3 {
		t.Fatalf("%d receipts left (%v), want 3", len(objs), err)
	}
	var snaps int
	_ = d.Data.List(ctx, "repos/"+tid+"/snapshots/", func(store.Info) error { snaps++; return nil })
	if snaps != 3 {
		t.Fatalf("%d snapshots left, want 3", snaps)
	}
	// Nothing more to prune; GC marks the seven packs, then deletes them.
	if rep, err := Prune(ctx, d, tid, opts); err != nil || rep.Removed != 0 {
		t.Fatalf("prune again: %+v %v", rep, err)
	}
	g, err := CollectGarbage(ctx, d, tid, GCOptions{})
	if err != nil || !slices.Equal(g.Plan.NewMarks, slices.Sorted(slices.Values(own[:7]))) {
		t.Fatalf("gc marks %v (%v), want the seven pruned nights' packs", g.Plan.NewMarks, err)
	}
	clk.Advance(25 * time.Hour)
	if g, err = CollectGarbage(ctx, d, tid, GCOptions{}); err != nil || len(g.Deleted) != 7 {
		t.Fatalf("gc after the grace: %+v %v", g, err)
	}
	for i, p := range own {
		if packExists(t, d, p) != (i >= 7) {
			t.Fatalf("pack of night %d: exists %v", i, packExists(t, d, p))
		}
	}
}

// TestPruneRefusesAnEmptyPolicy: no policy, no deletion.
func TestPruneRefusesAnEmptyPolicy(t *testing.T) {
	d, clk := vaultStore(t)
	putSnapshot(t, d, "web01", clk.Now(), putPack(t, d, "p"))
	if _, err := Prune(ctx, d, tid, PruneOptions{}); err == nil {
		t.Fatal("an empty policy was accepted")
	}
}
