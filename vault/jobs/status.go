package jobs

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/cofferhq/coffer/internal/drill"
	"github.com/cofferhq/coffer/vault/registry"
)

// VM states of a status report (VMStatus.State). With an objective R
// (snapshots that needed a cancelled seed are lost: counted apart, they
// never make a VM ok nor waiting):
//
//	ok       the newest snapshot safely in the vault is at most R old
//	late     it is older than R but at most 2R old
//	waiting  not ok nor late, but a snapshot at most 2R old waits on a
//	         seed (its packs travel on a shipped disk): the agent runs, the
//	         vault does not hold the data yet
//	absent   otherwise: no snapshot safely in the vault, nor one waiting,
//	         for more than 2R, or never (an expected VM that never reported)
//	no-rpo   the VM has no objective; nothing is judged
//
// Late, waiting and absent violate the objective (VMStatus.Violated).
const (
	StateOK      = "ok"
	StateLate    = "late"
	StateWaiting = "waiting"
	StateAbsent  = "absent"
	StateNoRPO   = "no-rpo"
)

// AbsentFactor is how many objectives without a snapshot make a VM absent
// rather than late.
const AbsentFactor = 2

// ReceiptSummary is what status needs of one receipt.
type ReceiptSummary struct {
	Name string    // the VM (snapshot name)
	Time time.Time // the snapshot's time
	// Seed: the snapshot waits on a seed in transit (SeedBook.InTransit
	// of SeedID): it never meets an objective. Once the seed is imported
	// the snapshot counts as any other.
	Seed bool
	// Lost: the seed the receipt names was cancelled (SeedBook.Lost): the
	// snapshot will never restore; it neither counts nor waits.
	Lost bool
	// SeedID is the seed the receipt names, if any.
	SeedID string
	// Snapshot is the snapshot's ID.
	Snapshot string
}

// RunRecord is one run of an agent for one VM, as run history records it.
type RunRecord struct {
	VM      string    `json:"vm"`
	Started time.Time `json:"started"`
	Failed  bool      `json:"failed"`
	Error   string    `json:"error,omitempty"`
}

// TenantInput is what the status of one tenant is computed from.
type TenantInput struct {
	Tenant   *registry.Tenant
	Receipts []ReceiptSummary
	// Unreadable counts receipts that could not be read; Orphans the
	// snapshots without a receipt (garbage collection refuses both).
	Unreadable, Orphans int
	// StoredBytes is what the vault measured; DataBytes what agents
	// reported of their disks' data (the dedup ratio is their quotient).
	StoredBytes, DataBytes, LogicalBytes int64
	Drills                               []*drill.Evidence
	// Runs are the agents' run records; RunHistory says whether there is
	// run history at all (false: no RunSource, nothing to judge).
	Runs       []RunRecord
	RunHistory bool
	GCLastRun  time.Time
}

// StatusReport is cofferd status: every tenant's VMs against their
// recovery point objectives, drills, usage.
type StatusReport struct {
	Time    time.Time       `json:"time"`
	Tenants []*TenantStatus `json:"tenants"`
	// Late, Waiting and Absent count VMs in those states; DrillsFailed the
	// tenants whose drill failed (TenantStatus.DrillFailed).
	Late         int `json:"late"`
	Waiting      int `json:"waiting"`
	Absent       int `json:"absent"`
	DrillsFailed int `json:"drills_failed"`
}

// Red reports whether anything needs the operator: a VM violates its
// objective or a tenant's drill failed (cofferd status exits 1).
func (r *StatusReport) Red() bool { return r.Late+r.Waiting+r.Absent+r.DrillsFailed > 0 }

// TenantStatus is one tenant's part of the report.
type TenantStatus struct {
	Tenant            string      `json:"tenant"`
	ID                string      `json:"id"`
	Suspended         bool        `json:"suspended,omitempty"`
	RPODefaultSeconds float64     `json:"rpo_default_seconds"` // 0: none
	VMs               []*VMStatus `json:"vms"`
	StoredBytes       int64       `json:"stored_bytes"`
	LogicalBytes      int64       `json:"logical_bytes"` // reported by agents
	DataBytes         int64       `json:"data_bytes"`    // reported by agents
	// DedupRatio is DataBytes / StoredBytes; 0 when nothing is stored.
	DedupRatio float64 `json:"dedup_ratio"`
	// LastDrill is the tenant's newest drill; DrillFailed is set when the
	// newest drill of any of its VMs failed.
	LastDrill   *DrillStatus `json:"last_drill,omitempty"`
	DrillFailed bool         `json:"drill_failed"`
	// GCRefused says why garbage collection would refuse to run, if it
	// would: snapshots without receipts, unreadable receipts.
	GCRefused  string    `json:"gc_refused,omitempty"`
	GCLastRun  time.Time `json:"gc_last_run,omitzero"`
	RunHistory bool      `json:"run_history"`
	// LastRun is the agents' newest run that names no VM (a scheduled
	// run of coffer agent covers all its sources); FailedRuns counts such
	// runs that did not end ok since the last that did.
	LastRun    *RunRecord `json:"last_run,omitempty"`
	FailedRuns int        `json:"failed_runs"`
}

// VMStatus is one VM of a tenant.
type VMStatus struct {
	VM         string  `json:"vm"`
	State      string  `json:"state"`
	Violated   bool    `json:"violated"`
	RPOSeconds float64 `json:"rpo_seconds"` // 0: none
	// Declared: an objective of the VM's own makes it expected.
	Declared bool `json:"declared,omitempty"`
	// Newest is the newest snapshot safely in the vault (not waiting on a
	// seed); AgeSeconds its age at the report's time.
	Newest       time.Time `json:"newest,omitzero"`
	AgeSeconds   float64   `json:"age_seconds,omitempty"`
	Snapshots    int       `json:"snapshots"`
	SeedsWaiting int       `json:"seeds_waiting"`
	NewestSeed   time.Time `json:"newest_waiting,omitzero"`
	// SeedsLost counts snapshots that needed a cancelled seed: they
	// cannot be restored.
	SeedsLost int          `json:"seeds_lost"`
	LastDrill *DrillStatus `json:"last_drill,omitempty"`
	// FailedRuns counts the runs that failed since Newest (every failed
	// run when there is no snapshot); LastError is the newest's error.
	FailedRuns int    `json:"failed_runs"`
	LastError  string `json:"last_error,omitempty"`
}

// DrillStatus is a drill's outcome.
type DrillStatus struct {
	VM     string    `json:"vm"`
	Time   time.Time `json:"time"`
	Passed bool      `json:"passed"`
	RunBy  string    `json:"run_by"`
	Error  string    `json:"error,omitempty"`
}

// ComputeStatus is the status of the tenants at now. It is pure: the same
// inputs give the same report.
func ComputeStatus(in []*TenantInput, now time.Time) *StatusReport {
	rep := &StatusReport{Time: now.UTC(), Tenants: []*TenantStatus{}}
	for _, ti := range in {
		ts := tenantStatus(ti, now)
		for _, v := range ts.VMs {
			switch v.State {
			case StateLate:
				rep.Late++
			case StateWaiting:
				rep.Waiting++
			case StateAbsent:
				rep.Absent++
			}
		}
		if ts.DrillFailed {
			rep.DrillsFailed++
		}
		rep.Tenants = append(rep.Tenants, ts)
	}
	slices.SortFunc(rep.Tenants, func(a, b *TenantStatus) int { return cmp.Compare(a.Tenant, b.Tenant) })
	return rep
}

// tenantStatus is one tenant's status at now.
func tenantStatus(ti *TenantInput, now time.Time) *TenantStatus {
	t := ti.Tenant
	ts := &TenantStatus{Tenant: t.Name, ID: t.ID, Suspended: t.Suspended(), StoredBytes: ti.StoredBytes,
		LogicalBytes: ti.LogicalBytes, DataBytes: ti.DataBytes, RunHistory: ti.RunHistory, GCLastRun: ti.GCLastRun}
	if t.RPO != nil {
		ts.RPODefaultSeconds = validRPO(t.RPO.Default).Seconds()
	}
	if ti.StoredBytes > 0 && ti.DataBytes > 0 {
		ts.DedupRatio = float64(ti.DataBytes) / float64(ti.StoredBytes)
	}
	ts.GCRefused = gcRefusal(ti.Orphans, ti.Unreadable)
	ts.LastRun, ts.FailedRuns = agentRuns(ti.Runs)
	vms := groupByVM(ti)
	last := lastDrills(ti.Drills)
	for _, name := range vms.names() {
		v := vmStatus(t, name, vms[name], now)
		v.LastDrill = last[name]
		ts.VMs = append(ts.VMs, v)
	}
	if ts.VMs == nil {
		ts.VMs = []*VMStatus{}
	}
	for _, v := range ts.VMs {
		d := v.LastDrill
		if d == nil {
			continue
		}
		ts.DrillFailed = ts.DrillFailed || !d.Passed
		if ts.LastDrill == nil || d.Time.After(ts.LastDrill.Time) {
			ts.LastDrill = d
		}
	}
	return ts
}

// gcRefusal says why garbage collection would refuse the tenant ("" when
// it would not).
func gcRefusal(orphans, unreadable int) string {
	switch {
	case orphans > 0 && unreadable > 0:
		return fmt.Sprintf("%d snapshots have no receipt and %d receipts are unreadable", orphans, unreadable)
	case orphans > 0:
		return fmt.Sprintf("%d snapshots have no receipt: run coffer snapshots --write-receipts with the tenant's agent", orphans)
	case unreadable > 0:
		return fmt.Sprintf("%d receipts are unreadable: cofferd check names them", unreadable)
	}
	return ""
}

// validRPO is d when it is a valid objective, else none (a tenant
// document edited by hand).
func validRPO(d time.Duration) time.Duration {
	if d < 0 || d > registry.MaxRPO {
		return 0
	}
	return d
}

// vmInput is what one VM's status is computed from.
type vmInput struct {
	newest, newestSeed     time.Time
	snapshots, seeds, lost int
	runs                   []RunRecord
}

// vmInputs are a tenant's VMs by name.
type vmInputs map[string]*vmInput

func (m vmInputs) get(name string) *vmInput {
	v := m[name]
	if v == nil {
		v = &vmInput{}
		m[name] = v
	}
	return v
}

func (m vmInputs) names() []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// groupByVM gathers the tenant's expected VMs: every VM a receipt or a
// run record names, and every VM with a positive objective of its own.
func groupByVM(ti *TenantInput) vmInputs {
	m := vmInputs{}
	for _, rc := range ti.Receipts {
		v := m.get(rc.Name)
		if rc.Lost {
			v.lost++
			continue
		}
		if rc.Seed {
			v.seeds++
			v.newestSeed = later(v.newestSeed, rc.Time)
			continue
		}
		v.snapshots++
		v.newest = later(v.newest, rc.Time)
	}
	runs := slices.Clone(ti.Runs)
	slices.SortStableFunc(runs, func(a, b RunRecord) int { return a.Started.Compare(b.Started) })
	for _, r := range runs {
		if r.VM == "" {
			continue // a run of the whole agent: the tenant's
		}
		v := m.get(r.VM)
		v.runs = append(v.runs, r)
	}
	if ti.Tenant.RPO != nil {
		for vm, d := range ti.Tenant.RPO.PerVM {
			if validRPO(d) > 0 {
				m.get(vm)
			}
		}
	}
	return m
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// vmStatus judges one VM of tenant t at now (the rule is on StateOK).
func vmStatus(t *registry.Tenant, name string, in *vmInput, now time.Time) *VMStatus {
	rpo, own := t.RPOFor(name)
	rpo = validRPO(rpo)
	v := &VMStatus{VM: name, RPOSeconds: rpo.Seconds(), Declared: own && rpo > 0, Newest: in.newest,
		Snapshots: in.snapshots, SeedsWaiting: in.seeds, NewestSeed: in.newestSeed, SeedsLost: in.lost}
	age := max(now.Sub(in.newest), 0)
	if !in.newest.IsZero() {
		v.AgeSeconds = age.Seconds()
	}
	for _, r := range in.runs {
		if r.Failed && r.Started.After(in.newest) {
			v.FailedRuns++
			v.LastError = r.Error // runs are in time order
		}
	}
	switch {
	case rpo == 0:
		v.State = StateNoRPO
	case !in.newest.IsZero() && age <= rpo:
		v.State = StateOK
	case !in.newest.IsZero() && age <= AbsentFactor*rpo:
		v.State = StateLate
	case !in.newestSeed.IsZero() && now.Sub(in.newestSeed) <= AbsentFactor*rpo:
		v.State = StateWaiting
	default:
		v.State = StateAbsent
	}
	v.Violated = v.State == StateLate || v.State == StateWaiting || v.State == StateAbsent
	return v
}

// lastDrills is the newest drill of each VM.
func lastDrills(list []*drill.Evidence) map[string]*DrillStatus {
	out := map[string]*DrillStatus{}
	for _, e := range list {
		if d := out[e.VM]; d != nil && !e.Started.After(d.Time) {
			continue
		}
		out[e.VM] = &DrillStatus{VM: e.VM, Time: e.Started.UTC(), Passed: e.Passed(), RunBy: e.RunBy, Error: e.Error}
	}
	return out
}

// agentRuns is the newest run that names no VM, and how many such runs
// failed since the newest that did not.
func agentRuns(runs []RunRecord) (*RunRecord, int) {
	var last *RunRecord
	failed := 0
	var lastOK time.Time
	for i := range runs {
		r := &runs[i]
		if r.VM != "" {
			continue
		}
		if last == nil || r.Started.After(last.Started) {
			last = r
		}
		if !r.Failed && r.Started.After(lastOK) {
			lastOK = r.Started
		}
	}
	for _, r := range runs {
		if r.VM == "" && r.Failed && r.Started.After(lastOK) {
			failed++
		}
	}
	return last, failed
}
