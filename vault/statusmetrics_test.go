package vault

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/vault/jobs"
)

var statusAt = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// sampleStatus has one tenant: web01 within its objective, web02 absent,
// a failed drill of web01.
func sampleStatus() *jobs.StatusReport {
	return &jobs.StatusReport{Time: statusAt, Absent: 1, DrillsFailed: 1, Tenants: []*jobs.TenantStatus{{
		Tenant: "acme", ID: "0123456789abcdef01234567", StoredBytes: 1000, DedupRatio: 2.5, DrillFailed: true,
		LastDrill: &jobs.DrillStatus{VM: "web01", Time: statusAt.Add(-time.Hour)},
		VMs: []*jobs.VMStatus{
			{VM: "web01", State: jobs.StateOK, RPOSeconds: 3600, Newest: statusAt.Add(-time.Minute),
				LastDrill: &jobs.DrillStatus{VM: "web01", Time: statusAt.Add(-time.Hour)}},
			{VM: "web02", State: jobs.StateAbsent, Violated: true, RPOSeconds: 3600, Declared: true, SeedsLost: 2},
			{VM: "nobody\x1b[2J", State: jobs.StateNoRPO},
		},
	}}}
}

const acmeLabels = `tenant="acme",tenant_id="0123456789abcdef01234567"`

// series gathers c through a registry (which checks the series are
// consistent and unique) as "name{labels}" -> value.
func series(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			sort.Strings(ls)
			key := mf.GetName()
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

// count is how many series of name there are.
func count(s map[string]float64, name string) int {
	n := 0
	for k := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			n++
		}
	}
	return n
}

// The gauges of a report, as a scrape shows them: the violation and the
// absence as 1, the failed drill as 0, a VM name cleaned.
func TestStatusCollectorGauges(t *testing.T) {
	c := NewStatusCollector(func(context.Context) (*jobs.StatusReport, error) { return sampleStatus(), nil }, clocktest.New(statusAt), 0, nil)
	got := series(t, c)
	vm := func(name, v string) string { return name + "{" + acmeLabels + `,vm="` + v + `"}` }
	for k, want := range map[string]float64{
		vm("coffer_vm_rpo_violated", "web01"): 0, vm("coffer_vm_rpo_violated", "web02"): 1,
		vm("coffer_vm_absent", "web01"): 0, vm("coffer_vm_absent", "web02"): 1,
		vm("coffer_vm_rpo_seconds", "web01"):                     3600,
		vm("coffer_vm_last_snapshot_timestamp_seconds", "web01"): float64(statusAt.Add(-time.Minute).Unix()),
		vm("coffer_vm_last_drill_passed", "web01"):               0,
		vm("coffer_vm_seeds_waiting", `nobody\\x1b[2J`):          0,
		vm("coffer_vm_seeds_lost", "web02"):                      2,
		"coffer_tenant_last_drill_passed{" + acmeLabels + "}":    0,
		"coffer_tenant_dedup_ratio{" + acmeLabels + "}":          2.5,
		"coffer_tenant_stored_bytes{" + acmeLabels + "}":         1000,
		"coffer_tenant_rpo_violations{" + acmeLabels + "}":       1,
		"coffer_status_up":                         1,
		"coffer_status_computed_timestamp_seconds": float64(statusAt.Unix()),
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (%v), want %v", k, v, ok, want)
		}
	}
	// No objective: no RPO series; no snapshot: no timestamp; no run
	// history: no failed runs.
	if count(got, "coffer_vm_rpo_violated") != 2 || count(got, "coffer_vm_last_snapshot_timestamp_seconds") != 1 || count(got, "coffer_vm_failed_runs") != 0 {
		t.Errorf("series: %v", got)
	}
}

// Scrapes within the TTL share one computation; a failed computation keeps
// the last good figures and says so in coffer_status_up.
func TestStatusCollectorCachesAndKeepsLastGood(t *testing.T) {
	clk := clocktest.New(statusAt)
	calls, fail := 0, false
	c := NewStatusCollector(func(context.Context) (*jobs.StatusReport, error) {
		calls++
		if fail {
			return nil, errors.New("store down")
		}
		return sampleStatus(), nil
	}, clk, 30*time.Second, nil)
	for range 3 {
		series(t, c)
	}
	if calls != 1 {
		t.Fatalf("%d computations within the TTL", calls)
	}
	clk.Advance(31 * time.Second)
	fail = true
	got := series(t, c)
	if count(got, "coffer_vm_rpo_violated") != 2 || calls != 2 || got["coffer_status_up"] != 0 {
		t.Fatalf("after a failure (%d computations): %v", calls, got)
	}
}

// At most MaxStatusVMs VMs of a tenant are series; names that clean to
// the same label are exported once; the violations count them all.
func TestStatusCollectorCapsVMs(t *testing.T) {
	ts := &jobs.TenantStatus{Tenant: "acme", ID: "0123456789abcdef01234567"}
	long := strings.Repeat("x", 200)
	ts.VMs = append(ts.VMs, &jobs.VMStatus{VM: long + "a"}, &jobs.VMStatus{VM: long + "b"})
	for i := range MaxStatusVMs + 10 {
		ts.VMs = append(ts.VMs, &jobs.VMStatus{VM: fmt.Sprintf("vm%04d", i), State: jobs.StateAbsent, Violated: true, RPOSeconds: 60})
	}
	rep := &jobs.StatusReport{Time: statusAt, Tenants: []*jobs.TenantStatus{ts}}
	c := NewStatusCollector(func(context.Context) (*jobs.StatusReport, error) { return rep, nil }, clocktest.New(statusAt), 0, nil)
	got := series(t, c)
	if n := count(got, "coffer_vm_seeds_waiting"); n != MaxStatusVMs {
		t.Fatalf("%d VMs exported, want %d", n, MaxStatusVMs)
	}
	if v := got["coffer_tenant_rpo_violations{"+acmeLabels+"}"]; v != MaxStatusVMs+10 {
		t.Fatalf("violations %v", v)
	}
	if v := got["coffer_tenant_status_vms_not_exported{"+acmeLabels+"}"]; v != 12 {
		t.Fatalf("not exported %v", v)
	}
}

// alertRules is the part of a Prometheus rule file the test reads.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// knownSeries are the names of every series cofferd serve exports.
func knownSeries(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc, 100)
	go func() {
		for _, c := range []prometheus.Collector{NewStatusCollector(nil, nil, 0, nil)} {
			c.Describe(ch)
		}
		close(ch)
	}()
	names := map[string]bool{}
	re := regexp.MustCompile(`fqName: "([a-z0-9_]+)"`)
	for d := range ch {
		names[re.FindStringSubmatch(d.String())[1]] = true
	}
	mfs, _ := reg.Gather() // the server's own vectors have no series yet: only their names
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	return names
}

// The example alert rules parse, every rule says when and why, and every
// coffer series an expression names is one cofferd exports; the RPO, the
// drill and the scrape itself are covered.
func TestAlertRules(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "deploy", "prometheus", "coffer-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f alertRules
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatal(err)
	}
	known := knownSeries(t)
	ident := regexp.MustCompile(`\bcoffer[a-z0-9_]*\b`)
	covered := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if _, err := time.ParseDuration(r.For); r.Alert == "" || r.Expr == "" || err != nil || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %q: alert, expr, for (a duration), severity and a summary are needed", r.Alert)
			}
			expr := regexp.MustCompile(`"[^"]*"`).ReplaceAllString(r.Expr, `""`) // label values are not series
			for _, name := range ident.FindAllString(expr, -1) {
				if !known[name] {
					t.Errorf("rule %s names %s, which cofferd does not export", r.Alert, name)
				}
				covered[name] = true
			}
			if strings.Contains(r.Expr, "absent(") {
				covered["absent"] = true
			}
		}
	}
	for _, want := range []string{"coffer_vm_rpo_violated", "coffer_tenant_last_drill_passed", "absent"} {
		if !covered[want] {
			t.Errorf("no rule uses %s", want)
		}
	}
}
