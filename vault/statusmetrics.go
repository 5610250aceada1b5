package vault

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/vault/jobs"
)

// Status gauges' bounds.
const (
	// StatusCacheTTL is how long a computed status serves scrapes.
	StatusCacheTTL = 30 * time.Second
	// statusTimeout bounds one computation of the status.
	statusTimeout = 25 * time.Second
	// MaxStatusVMs bounds the VMs of one tenant exported as series (VM
	// names are the agents' choice); the others still count in
	// coffer_tenant_rpo_violations.
	MaxStatusVMs = 500
	// maxLabel bounds a VM label value, in characters.
	maxLabel = 128
)

// StatusCompute computes the vault's status (jobs.StatusReader.Status over
// every tenant).
type StatusCompute func(ctx context.Context) (*jobs.StatusReport, error)

// StatusCollector exports cofferd status as Prometheus gauges. It computes
// the status on scrape, at most once per TTL (concurrent scrapes share one
// computation), so scrapes never hammer the store. When a computation
// fails it keeps exporting the last good figures, so an alert on them does
// not resolve by itself, and sets coffer_status_up to 0.
//
// The tenant label is the tenant's name (tenant_id its ID, as cofferd's
// other series use); the vm label is the snapshot name, cleaned of
// characters a terminal acts on and cut to 128 characters.
type StatusCollector struct {
	compute StatusCompute
	clock   clock.Clock
	ttl     time.Duration
	log     *slog.Logger

	mu   sync.Mutex
	at   time.Time // of the last attempt
	last *jobs.StatusReport
	ok   bool // the last attempt succeeded
}

// NewStatusCollector returns a collector over compute; ttl 0 means
// StatusCacheTTL.
func NewStatusCollector(compute StatusCompute, clk clock.Clock, ttl time.Duration, log *slog.Logger) *StatusCollector {
	if ttl <= 0 {
		ttl = StatusCacheTTL
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &StatusCollector{compute: compute, clock: clock.Or(clk), ttl: ttl, log: log}
}

var (
	vmLabels     = []string{"tenant", "tenant_id", "vm"}
	tenantLabels = []string{"tenant", "tenant_id"}

	descLastSnapshot = prometheus.NewDesc("coffer_vm_last_snapshot_timestamp_seconds",
		"Time of the newest snapshot of a VM safely in the vault (not waiting on a seed); absent when there is none.", vmLabels, nil)
	descRPO = prometheus.NewDesc("coffer_vm_rpo_seconds",
		"The VM's recovery point objective; absent when it has none.", vmLabels, nil)
	descViolated = prometheus.NewDesc("coffer_vm_rpo_violated",
		"1 when the VM is late, waiting on a seed or absent (cofferd status), 0 when within its objective; absent without an objective.", vmLabels, nil)
	descAbsent = prometheus.NewDesc("coffer_vm_absent",
		"1 when an expected VM has had no snapshot for more than twice its objective, or never.", vmLabels, nil)
	descSeeds = prometheus.NewDesc("coffer_vm_seeds_waiting",
		"Snapshots of the VM waiting on a seed not imported yet.", vmLabels, nil)
	descSeedsLost = prometheus.NewDesc("coffer_vm_seeds_lost",
		"Snapshots of the VM that needed a cancelled seed: they cannot be restored.", vmLabels, nil)
	descVMDrill = prometheus.NewDesc("coffer_vm_last_drill_passed",
		"1 when the VM's newest restore drill passed, 0 when it failed; absent without a drill.", vmLabels, nil)
	descFailedRuns = prometheus.NewDesc("coffer_vm_failed_runs",
		"Agent runs of the VM that failed since its newest snapshot; absent without run history.", vmLabels, nil)
	descDrill = prometheus.NewDesc("coffer_tenant_last_drill_passed",
		"0 when the newest drill of any of the tenant's VMs failed, else 1; absent without a drill.", tenantLabels, nil)
	descDrillTime = prometheus.NewDesc("coffer_tenant_last_drill_timestamp_seconds",
		"Time the tenant's newest drill started.", tenantLabels, nil)
	descStored = prometheus.NewDesc("coffer_tenant_stored_bytes",
		"Bytes the vault stores for the tenant.", tenantLabels, nil)
	descDedup = prometheus.NewDesc("coffer_tenant_dedup_ratio",
		"Data bytes the tenant's agents reported over bytes stored; 0 when nothing is stored.", tenantLabels, nil)
	descViolations = prometheus.NewDesc("coffer_tenant_rpo_violations",
		"The tenant's VMs late, waiting on a seed or absent, including VMs not exported as series.", tenantLabels, nil)
	descNotExported = prometheus.NewDesc("coffer_tenant_status_vms_not_exported",
		"VMs of the tenant left out of the per-VM series (over the cap, or a name that cleans to another's).", tenantLabels, nil)
	descUp = prometheus.NewDesc("coffer_status_up",
		"1 when the last computation of the status succeeded; 0 when it failed (the other coffer_ series are then the last good ones).", nil, nil)
	descComputed = prometheus.NewDesc("coffer_status_computed_timestamp_seconds",
		"Time of the status the coffer_ series show.", nil, nil)
)

// Describe sends every gauge's description.
func (c *StatusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLastSnapshot, descRPO, descViolated, descAbsent, descSeeds, descSeedsLost, descVMDrill, descFailedRuns,
		descDrill, descDrillTime, descStored, descDedup, descViolations, descNotExported, descUp, descComputed} {
		ch <- d
	}
}

// Collect computes the status if the cached one is older than the TTL and
// sends its gauges.
func (c *StatusCollector) Collect(ch chan<- prometheus.Metric) {
	rep, ok := c.report()
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, b2f(ok))
	if rep == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descComputed, prometheus.GaugeValue, unix(rep.Time))
	for _, ts := range rep.Tenants {
		collectTenant(ch, ts)
	}
}

// report is the cached status, computed again once the TTL has passed.
func (c *StatusCollector) report() (*jobs.StatusReport, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	if !c.at.IsZero() && now.Sub(c.at) < c.ttl {
		return c.last, c.ok
	}
	c.at = now
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	rep, err := c.compute(ctx)
	if err != nil {
		c.log.Warn("computing the status for the metrics failed; the last good figures stay", "err", err.Error())
		c.ok = false
		return c.last, false
	}
	c.last, c.ok = rep, true
	return rep, true
}

// collectTenant sends one tenant's gauges.
func collectTenant(ch chan<- prometheus.Metric, ts *jobs.TenantStatus) {
	tl := []string{ts.Tenant, ts.ID}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descStored, float64(ts.StoredBytes), tl...)
	gauge(descDedup, ts.DedupRatio, tl...)
	if ts.LastDrill != nil {
		gauge(descDrill, b2f(!ts.DrillFailed), tl...)
		gauge(descDrillTime, unix(ts.LastDrill.Time), tl...)
	}
	violations, skipped := 0, 0
	seen := map[string]bool{}
	for _, v := range ts.VMs {
		if v.Violated {
			violations++
		}
		label := termtext.Clip(v.VM, maxLabel)
		if len(seen) >= MaxStatusVMs || seen[label] {
			skipped++
			continue
		}
		seen[label] = true
		collectVM(gauge, ts, v, []string{ts.Tenant, ts.ID, label})
	}
	gauge(descViolations, float64(violations), tl...)
	gauge(descNotExported, float64(skipped), tl...)
}

// collectVM sends one VM's gauges.
func collectVM(gauge func(*prometheus.Desc, float64, ...string), ts *jobs.TenantStatus, v *jobs.VMStatus, l []string) {
	if !v.Newest.IsZero() {
		gauge(descLastSnapshot, unix(v.Newest), l...)
	}
	if v.RPOSeconds > 0 {
		gauge(descRPO, v.RPOSeconds, l...)
		gauge(descViolated, b2f(v.Violated), l...)
		gauge(descAbsent, b2f(v.State == jobs.StateAbsent), l...)
	}
	gauge(descSeeds, float64(v.SeedsWaiting), l...)
	gauge(descSeedsLost, float64(v.SeedsLost), l...)
	if v.LastDrill != nil {
		gauge(descVMDrill, b2f(v.LastDrill.Passed), l...)
	}
	if ts.RunHistory {
		gauge(descFailedRuns, float64(v.FailedRuns), l...)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
