package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/drill"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/vault/registry"
)

// countingGets counts the Gets of a store.
type countingGets struct {
	store.Store
	gets atomic.Int64
}

func (c *countingGets) Get(ctx context.Context, name string, off, n int64, fn func(io.Reader) error) error {
	c.gets.Add(1)
	return c.Store.Get(ctx, name, off, n, fn)
}

func putEvidence(t *testing.T, s store.Store, name string, e *drill.Evidence) {
	t.Helper()
	e.SnapshotID, e.SnapshotTime, e.Pick, e.Target = strings.Repeat("ab", 32), e.Started, drill.PickNewest, drill.TargetVerifyOnly
	e.RTO = drill.RTONoObjective
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if name == "" {
		name = "repos/" + tid + "/" + drill.AgentName(b)
	}
	if err := s.Put(ctx, name, store.Bytes(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// The reader finds receipts (the newest per VM), a snapshot without a
// receipt, an unreadable receipt, the vault's and the agent's drill
// evidence (refusing evidence that lies about who ran it), run records
// from its RunSource; a second read parses nothing it parsed before.
func TestStatusReader(t *testing.T) {
	d, clk := vaultStore(t)
	now := clk.Now()
	putSnapshot(t, d, "web01", now.Add(-30*time.Hour))
	putSnapshot(t, d, "web01", now.Add(-2*time.Hour))
	putSnapshot(t, d, "db01", now.Add(-3*time.Hour))
	orphan := []byte("orphan snapshot")
	sum := sha256.Sum256(orphan)
	bad := []byte(`{"version": 1, "snapshot": "nope"}`)
	bsum := sha256.Sum256(bad)
	for name, b := range map[string][]byte{"snapshots/" + hex.EncodeToString(sum[:]): orphan, "receipts/" + hex.EncodeToString(bsum[:]): bad} {
		if err := d.Data.Put(ctx, "repos/"+tid+"/"+name, store.Bytes(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	vaultDrill := evidence("web01", now.Add(-time.Hour), false)
	vaultDrill.TenantID = tid
	putEvidence(t, d.Data, drill.VaultTenantPrefix(tid)+"1.json", vaultDrill)
	putEvidence(t, d.Data, drill.VaultTenantPrefix(tid)+"2.json", evidence("db01", now, true)) // no tenant id: refused
	agentDrill := evidence("db01", now.Add(-time.Hour), true)
	agentDrill.RunBy = drill.ByAgent
	putEvidence(t, d.Data, "", agentDrill)
	putEvidence(t, d.Data, "", evidence("web01", now, true)) // says vault, but in the repository: refused

	counted := &countingGets{Store: d.Data}
	runs := func(_ context.Context, id string) ([]RunRecord, error) {
		return []RunRecord{{VM: "web01", Started: now.Add(-time.Hour), Failed: true, Error: "boom"}}, nil
	}
	r := &StatusReader{Data: counted, Meta: d.Meta, Runs: runs}
	ten := &registry.Tenant{ID: tid, Name: "acme", RPO: &registry.RPO{Default: 24 * time.Hour}}
	rep, err := r.Status(ctx, []*registry.Tenant{ten}, now)
	if err != nil {
		t.Fatal(err)
	}
	ts := rep.Tenants[0]
	if len(ts.VMs) != 2 || ts.VMs[0].VM != "db01" || ts.VMs[1].VM != "web01" {
		t.Fatalf("VMs: %+v", ts.VMs)
	}
	db, web := ts.VMs[0], ts.VMs[1]
	if db.State != StateOK || db.LastDrill == nil || !db.LastDrill.Passed || db.LastDrill.RunBy != drill.ByAgent {
		t.Errorf("db01: %+v %+v", db, db.LastDrill)
	}
	if web.State != StateOK || web.Snapshots != 2 || web.AgeSeconds != 7200 || web.LastDrill == nil || web.LastDrill.Passed || web.FailedRuns != 1 {
		t.Errorf("web01: %+v %+v", web, web.LastDrill)
	}
	if !ts.DrillFailed || !ts.RunHistory || !strings.Contains(ts.GCRefused, "1 snapshots have no receipt and 1 receipts are unreadable") || !rep.Red() {
		t.Errorf("tenant: %+v", ts)
	}
	first := counted.gets.Load()
	if _, err := r.Status(ctx, []*registry.Tenant{ten}, now); err != nil {
		t.Fatal(err)
	}
	// Again: only the unreadable receipt and the two refused evidence
	// objects are read again.
	if again := counted.gets.Load() - first; again != 3 {
		t.Errorf("a second status read %d objects again, want 3 (what could not be used)", again)
	}
}

// Without a RunSource there is no run history; without a ledger no usage.
func TestStatusReaderNoRunsNoLedger(t *testing.T) {
	d, clk := vaultStore(t)
	putSnapshot(t, d, "web01", clk.Now().Add(-time.Hour))
	r := &StatusReader{Data: d.Data, Meta: d.Meta}
	rep, err := r.Status(ctx, []*registry.Tenant{{ID: tid, Name: "acme"}}, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ts := rep.Tenants[0]; ts.RunHistory || ts.StoredBytes != 0 || len(ts.VMs) != 1 || ts.VMs[0].State != StateNoRPO || ts.GCRefused != "" {
		t.Fatalf("%+v", ts)
	}
}

// failingList fails every listing.
type failingList struct{ store.Store }

func (failingList) List(context.Context, string, func(store.Info) error) error {
	return store.ErrDenied
}

// A store that cannot be listed fails the status, naming the tenant.
func TestStatusReaderListFails(t *testing.T) {
	d, clk := vaultStore(t)
	r := &StatusReader{Data: failingList{d.Data}, Meta: d.Meta}
	_, err := r.Status(ctx, []*registry.Tenant{{ID: tid, Name: "acme"}}, clk.Now())
	if err == nil || !strings.Contains(err.Error(), "receipts of tenant acme") {
		t.Fatalf("%v", err)
	}
}

// cancelAfter cancels its context after n Gets.
type cancelAfter struct {
	store.Store
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Get(ctx context.Context, name string, off, n int64, fn func(io.Reader) error) error {
	if c.n--; c.n < 0 {
		c.cancel()
		return ctx.Err()
	}
	return c.Store.Get(ctx, name, off, n, fn)
}

// A status cut short keeps the receipts it parsed: the next one goes on
// from there instead of starting over.
func TestStatusReaderKeepsProgress(t *testing.T) {
	d, clk := vaultStore(t)
	for i := range 5 {
		putSnapshot(t, d, "web01", clk.Now().Add(-time.Duration(i)*time.Hour))
	}
	cctx, cancel := context.WithCancel(ctx)
	cut := &cancelAfter{Store: d.Data, n: 3, cancel: cancel}
	r := &StatusReader{Data: cut, Meta: d.Meta}
	ten := &registry.Tenant{ID: tid, Name: "acme"}
	if _, err := r.Status(cctx, []*registry.Tenant{ten}, clk.Now()); err == nil {
		t.Fatal("a cancelled status succeeded")
	}
	counted := &countingGets{Store: d.Data}
	r.Data = counted
	rep, err := r.Status(ctx, []*registry.Tenant{ten}, clk.Now())
	if err != nil || rep.Tenants[0].VMs[0].Snapshots != 5 {
		t.Fatalf("%+v %v", rep, err)
	}
	if n := counted.gets.Load(); n != 2 {
		t.Fatalf("the second status read %d receipts, want the 2 the first did not", n)
	}
}
