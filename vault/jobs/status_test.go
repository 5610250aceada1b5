package jobs

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/drill"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/registry"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var statusNow = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return statusNow.Add(-d) }

// acmeTenant has a default RPO of 24h, db01 1h of its own, never 4h of its
// own (it never reported), retired an explicit none.
func acmeTenant() *registry.Tenant {
	return &registry.Tenant{ID: tid, Name: "acme", State: vaultapi.StateActive, RPO: &registry.RPO{Default: 24 * time.Hour,
		PerVM: map[string]time.Duration{"db01": time.Hour, "never": 4 * time.Hour, "retired": 0}}}
}

func evidence(vm string, at time.Time, passed bool) *drill.Evidence {
	e := &drill.Evidence{Version: drill.Version, RunBy: drill.ByVault, VM: vm, Started: at, Finished: at.Add(time.Minute), Result: drill.Passed}
	if !passed {
		e.Result, e.Error = drill.Failed, "disk 0: damaged"
	}
	return e
}

// acmeInput covers every state once.
func acmeInput() *TenantInput {
	return &TenantInput{Tenant: acmeTenant(), Receipts: []ReceiptSummary{
		{Name: "web01", Time: ago(50 * time.Hour)}, {Name: "web01", Time: ago(2 * time.Hour)}, // ok: the newest counts
		{Name: "web02", Time: ago(30 * time.Hour)},         // late
		{Name: "web03", Time: ago(49 * time.Hour)},         // absent: over 2 x 24h
		{Name: "db01", Time: ago(30 * time.Minute)},        // ok within its own 1h
		{Name: "retired", Time: ago(900 * time.Hour)},      // no-rpo
		{Name: "seeded", Time: ago(time.Hour), Seed: true}, // waiting
		{Name: "skewed", Time: statusNow.Add(time.Hour)},   // an agent's clock ahead: ok, age 0
	}, StoredBytes: 1000, DataBytes: 3500, LogicalBytes: 8000, Orphans: 2}
}

// Every state, with the rule on StateOK: the newest snapshot safely in the
// vault against the VM's objective; a seed never meets it; a declared VM
// that never reported is absent.
func TestComputeStatusStates(t *testing.T) {
	rep := ComputeStatus([]*TenantInput{acmeInput()}, statusNow)
	want := map[string]string{"web01": StateOK, "web02": StateLate, "web03": StateAbsent, "db01": StateOK,
		"retired": StateNoRPO, "seeded": StateWaiting, "skewed": StateOK, "never": StateAbsent}
	ts := rep.Tenants[0]
	if len(ts.VMs) != len(want) {
		t.Fatalf("%d VMs, want %d: %+v", len(ts.VMs), len(want), ts.VMs)
	}
	for _, v := range ts.VMs {
		if v.State != want[v.VM] {
			t.Errorf("%s: state %s, want %s", v.VM, v.State, want[v.VM])
		}
		if v.Violated != (v.State == StateLate || v.State == StateAbsent || v.State == StateWaiting) {
			t.Errorf("%s: violated %v in state %s", v.VM, v.Violated, v.State)
		}
	}
	vm := func(name string) *VMStatus {
		for _, v := range ts.VMs {
			if v.VM == name {
				return v
			}
		}
		t.Fatalf("no VM %s", name)
		return nil
	}
	if v := vm("web01"); v.AgeSeconds != 7200 || v.Snapshots != 2 || !v.Newest.Equal(ago(2*time.Hour)) || v.RPOSeconds != 86400 {
		t.Errorf("web01: %+v", v)
	}
	if v := vm("never"); !v.Declared || v.Snapshots != 0 || !v.Newest.IsZero() || v.RPOSeconds != 4*3600 {
		t.Errorf("never: %+v", v)
	}
	if v := vm("seeded"); v.SeedsWaiting != 1 || v.Snapshots != 0 || !v.Newest.IsZero() {
		t.Errorf("seeded: %+v", v)
	}
	if v := vm("skewed"); v.AgeSeconds != 0 {
		t.Errorf("skewed: %+v", v)
	}
	if rep.Late != 1 || rep.Absent != 2 || rep.Waiting != 1 || rep.DrillsFailed != 0 || !rep.Red() {
		t.Errorf("counts: %+v", rep)
	}
	if ts.DedupRatio != 3.5 || ts.GCRefused == "" || ts.RPODefaultSeconds != 86400 || ts.RunHistory {
		t.Errorf("tenant: %+v", ts)
	}
}

// The edges: exactly the objective is ok, exactly twice it late, a
// nanosecond more absent; a seed older than twice it is absent too.
func TestComputeStatusEdges(t *testing.T) {
	ten := &registry.Tenant{ID: tid, Name: "acme", RPO: &registry.RPO{Default: time.Hour}}
	for _, c := range []struct {
		rc   ReceiptSummary
		want string
	}{
		{ReceiptSummary{Name: "a", Time: ago(time.Hour)}, StateOK},
		{ReceiptSummary{Name: "a", Time: ago(time.Hour + 1)}, StateLate},
		{ReceiptSummary{Name: "a", Time: ago(2 * time.Hour)}, StateLate},
		{ReceiptSummary{Name: "a", Time: ago(2*time.Hour + 1)}, StateAbsent},
		{ReceiptSummary{Name: "a", Time: ago(time.Minute), Seed: true}, StateWaiting},
		{ReceiptSummary{Name: "a", Time: ago(2 * time.Hour), Seed: true}, StateWaiting},
		{ReceiptSummary{Name: "a", Time: ago(2*time.Hour + 1), Seed: true}, StateAbsent},
		// A snapshot lost with a cancelled seed is neither safe nor waiting.
		{ReceiptSummary{Name: "a", Time: ago(time.Minute), Lost: true}, StateAbsent},
	} {
		rep := ComputeStatus([]*TenantInput{{Tenant: ten, Receipts: []ReceiptSummary{c.rc}}}, statusNow)
		if got := rep.Tenants[0].VMs[0].State; got != c.want {
			t.Errorf("%+v: %s, want %s", c.rc, got, c.want)
		}
	}
}

// Without objectives nothing is judged: every VM is no-rpo and the report
// is not red; nothing stored gives no dedup ratio.
func TestComputeStatusNoObjectives(t *testing.T) {
	in := acmeInput()
	in.Tenant.RPO = nil
	in.StoredBytes = 0
	rep := ComputeStatus([]*TenantInput{in}, statusNow)
	for _, v := range rep.Tenants[0].VMs {
		if v.State != StateNoRPO || v.Violated {
			t.Errorf("%s: %s", v.VM, v.State)
		}
	}
	if rep.Red() || rep.Tenants[0].DedupRatio != 0 || len(rep.Tenants[0].VMs) != 7 {
		t.Fatalf("%+v", rep)
	}
}

// A VM's newest drill decides: failed after a pass turns the tenant red,
// passed after a failure does not; drills of VMs no longer reporting are
// history and ignored.
func TestComputeStatusDrills(t *testing.T) {
	in := acmeInput()
	in.Drills = []*drill.Evidence{
		evidence("web01", ago(10*time.Hour), true), evidence("web01", ago(time.Hour), false),
		evidence("db01", ago(10*time.Hour), false), evidence("db01", ago(5*time.Hour), true),
		evidence("gone", ago(time.Minute), false),
	}
	rep := ComputeStatus([]*TenantInput{in}, statusNow)
	ts := rep.Tenants[0]
	if !ts.DrillFailed || rep.DrillsFailed != 1 || ts.LastDrill == nil || ts.LastDrill.VM != "web01" || ts.LastDrill.Passed {
		t.Fatalf("drills: %+v %+v", ts, ts.LastDrill)
	}
	for _, v := range ts.VMs {
		switch v.VM {
		case "db01":
			if v.LastDrill == nil || !v.LastDrill.Passed {
				t.Errorf("db01's newest drill passed: %+v", v.LastDrill)
			}
		case "web01":
			if v.LastDrill == nil || v.LastDrill.Passed || v.LastDrill.Error == "" {
				t.Errorf("web01's newest drill failed: %+v", v.LastDrill)
			}
		}
	}
	in.Drills = in.Drills[2:4]
	in.Tenant.RPO = nil
	if rep := ComputeStatus([]*TenantInput{in}, statusNow); rep.Red() {
		t.Fatalf("a passed newest drill and no objectives: red %+v", rep)
	}
}

// Run records: failed runs since the newest snapshot count, older ones do
// not; a VM that only ever failed is expected and absent.
func TestComputeStatusRuns(t *testing.T) {
	in := acmeInput()
	in.RunHistory = true
	in.Runs = []RunRecord{
		{VM: "web02", Started: ago(5 * time.Hour), Failed: true, Error: "vm not found"},
		{VM: "web02", Started: ago(29 * time.Hour), Failed: true, Error: "older"},
		{VM: "web02", Started: ago(40 * time.Hour), Failed: true, Error: "before the snapshot"},
		{VM: "web01", Started: ago(2 * time.Hour)},
		{VM: "broken", Started: ago(time.Hour), Failed: true, Error: "store unreachable"},
	}
	rep := ComputeStatus([]*TenantInput{in}, statusNow)
	got := map[string]*VMStatus{}
	for _, v := range rep.Tenants[0].VMs {
		got[v.VM] = v
	}
	if v := got["web02"]; v.FailedRuns != 2 || v.LastError != "vm not found" {
		t.Errorf("web02: %+v", v)
	}
	if v := got["web01"]; v.FailedRuns != 0 {
		t.Errorf("web01: %+v", v)
	}
	if v := got["broken"]; v == nil || v.State != StateAbsent || v.FailedRuns != 1 {
		t.Errorf("broken: %+v", v)
	}
	if !rep.Tenants[0].RunHistory {
		t.Error("run history not shown")
	}
}

// The JSON document is stable: a golden file (go test -update rewrites it).
func TestStatusGolden(t *testing.T) {
	in := acmeInput()
	in.Drills = []*drill.Evidence{evidence("web01", ago(time.Hour), false)}
	other := &TenantInput{Tenant: &registry.Tenant{ID: "abcdefabcdefabcdefabcdef", Name: "beta", State: vaultapi.StateSuspended}}
	got, err := json.MarshalIndent(ComputeStatus([]*TenantInput{other, in}, statusNow), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "status.golden.json")
	if *update {
		if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != string(got)+"\n" {
		t.Fatalf("the status document changed; if on purpose, run go test -update:\n%s", got)
	}
}

// Runs of the whole agent (no VM) are the tenant's: the newest is shown,
// and the failures since the last success are counted; no VM named "" is
// made up.
func TestComputeStatusAgentRuns(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	ten := &registry.Tenant{ID: "0123456789abcdef01234567", Name: "acme"}
	runs := []RunRecord{
		{Started: now.Add(-72 * time.Hour), Failed: true, Error: "old"},
		{Started: now.Add(-48 * time.Hour)},
		{Started: now.Add(-24 * time.Hour), Failed: true, Error: "disk full"},
		{Started: now.Add(-time.Hour), Failed: true, Error: "vault unreachable"},
	}
	rep := ComputeStatus([]*TenantInput{{Tenant: ten, Runs: runs, RunHistory: true}}, now)
	ts := rep.Tenants[0]
	if len(ts.VMs) != 0 {
		t.Fatalf("runs without a VM made VMs: %+v", ts.VMs)
	}
	if ts.LastRun == nil || ts.LastRun.Error != "vault unreachable" || ts.FailedRuns != 2 {
		t.Fatalf("last run %+v, failed %d; want the newest and 2", ts.LastRun, ts.FailedRuns)
	}
}
