package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/drill"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/registry"
)

// statusT0 is when the status tests look.
var statusT0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// backupAt backs image up into r as snapshot name, taken at.
func backupAt(t *testing.T, r *repo.Repo, image, name string, at time.Time) {
	t.Helper()
	src, err := source.OpenImage(image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	b, err := uploader.New(r, src, uploader.Options{Name: name, Clock: clocktest.New(at)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// statusVault is a vault with tenant acme (escrow) whose web01 was backed
// up 2 hours before t0 and web02 30 hours before; it returns the escrow
// identity file.
func statusVault(t *testing.T, dir string, t0 time.Time) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := diskgen.Generate(img, 1<<20, 7, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	return escrowTenantWith(t, dir, "acme", true, func(r *repo.Repo) {
		backupAt(t, r, img, "web01", t0.Add(-2*time.Hour))
		backupAt(t, r, img, "web02", t0.Add(-30*time.Hour))
	})
}

// statusJSON runs cofferd --json status at statusT0, wanting exit code.
func statusJSON(t *testing.T, dir string, code int) (statusOut, map[string]*jobs.VMStatus) {
	t.Helper()
	r := cofferdAt(t, dir, &stepClock{now: statusT0}, "--json", "status")
	var out statusOut
	if r.code != code || strictJSON(r.stdout, &out) != nil || out.Type != "status" || len(out.Tenants) != 1 {
		t.Fatalf("status: %+v (%v); want exit %d", r, strictJSON(r.stdout, &out), code)
	}
	vms := map[string]*jobs.VMStatus{}
	for _, v := range out.Tenants[0].VMs {
		vms[v.VM] = v
	}
	return out, vms
}

// cofferd status end to end: VMs within their objective exit 0; one past
// it is late (exit 1); a declared VM that never reported is absent (exit
// 1); a failed drill shows and exits 1 though every objective is met.
func TestStatus(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	dir := t.TempDir()
	idFile := statusVault(t, dir, statusT0)
	at := &stepClock{now: statusT0}

	if r := cofferd(t, dir, "tenant", "set-rpo", "acme", "24h"); r.code != 0 || !strings.Contains(r.stdout, "tenant acme: recovery point objective 24h0m0s") {
		t.Fatalf("set-rpo: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "set-rpo", "acme", "48h", "--vm", "web02"); r.code != 0 || !strings.Contains(r.stdout, "VM web02: recovery point objective 48h0m0s (its own)") {
		t.Fatalf("set-rpo --vm: %+v", r)
	}
	out, vms := statusJSON(t, dir, 0)
	if out.Red || vms["web01"].State != jobs.StateOK || vms["web02"].State != jobs.StateOK || vms["web01"].AgeSeconds != 7200 {
		t.Fatalf("within the objectives: %+v %+v %+v", out, vms["web01"], vms["web02"])
	}
	r := cofferdAt(t, dir, at, "status")
	if r.code != 0 || !strings.Contains(r.stdout, "web01") || !strings.Contains(r.stdout, "2h0m0s") || strings.Contains(r.stdout, "no run history") {
		t.Fatalf("status table: %+v", r)
	}

	// web02 follows the default again: 30 hours is late.
	if r := cofferd(t, dir, "tenant", "set-rpo", "acme", "default", "--vm", "web02"); r.code != 0 || !strings.Contains(r.stdout, "(the tenant's default)") {
		t.Fatalf("set-rpo default: %+v", r)
	}
	out, vms = statusJSON(t, dir, 1)
	if !out.Red || out.Late != 1 || vms["web02"].State != jobs.StateLate || !vms["web02"].Violated {
		t.Fatalf("late: %+v %+v", out, vms["web02"])
	}
	r = cofferdAt(t, dir, at, "status")
	if r.code != 1 || !strings.Contains(r.stdout, "late") || !strings.Contains(r.stderr, "1 late") {
		t.Fatalf("late as text: %+v", r)
	}

	// db01 is declared but its agent never ran.
	if r := cofferd(t, dir, "tenant", "set-rpo", "acme", "none", "--vm", "web02"); r.code != 0 {
		t.Fatalf("set-rpo none: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "set-rpo", "acme", "1h", "--vm", "db01"); r.code != 0 {
		t.Fatalf("set-rpo db01: %+v", r)
	}
	out, vms = statusJSON(t, dir, 1)
	if out.Absent != 1 || out.Late != 0 || vms["db01"] == nil || vms["db01"].State != jobs.StateAbsent || !vms["db01"].Declared ||
		vms["web02"].State != jobs.StateNoRPO {
		t.Fatalf("absent: %+v %+v", out, vms)
	}
	if r := cofferdAt(t, dir, at, "status", "--tenant", "acme"); r.code != 1 || !strings.Contains(r.stdout, "absent") || !strings.Contains(r.stdout, "never") {
		t.Fatalf("absent as text: %+v", r)
	}

	// Every objective met, but the newest drill fails.
	if r := cofferd(t, dir, "tenant", "set-rpo", "acme", "default", "--vm", "db01"); r.code != 0 {
		t.Fatalf("set-rpo: %+v", r)
	}
	tamperPacks(t, tenantRepoDir(t, dir))
	if r := cofferdAt(t, dir, at, "drill", "--escrow-key", idFile, "--name", "web01"); r.code != 1 {
		t.Fatalf("drill of tampered packs: %+v", r)
	}
	out, vms = statusJSON(t, dir, 1)
	if out.DrillsFailed != 1 || out.Late+out.Absent+out.Waiting != 0 || vms["web01"].LastDrill == nil || vms["web01"].LastDrill.Passed ||
		!out.Tenants[0].DrillFailed {
		t.Fatalf("failed drill: %+v %+v", out, vms["web01"])
	}
	r = cofferdAt(t, dir, at, "status")
	if r.code != 1 || !strings.Contains(r.stdout, "FAILED") || !strings.Contains(r.stdout, "the newest drill of web01 failed") || !strings.Contains(r.stderr, "drill") {
		t.Fatalf("failed drill as text: %+v", r)
	}
}

// set-rpo refuses what it cannot read, and prints every objective under
// --json; status of an unknown tenant is not found.
func TestSetRPOFlags(t *testing.T) {
	dir := t.TempDir()
	if r := cofferd(t, dir, "tenant", "create", "acme"); r.code != 0 {
		t.Fatal(r)
	}
	for _, args := range [][]string{{"acme", "soon"}, {"acme", "-1h"}, {"acme", "0s"}, {"acme", "9000h"}, {"acme", "default"}} {
		if r := cofferd(t, dir, append([]string{"tenant", "set-rpo"}, args...)...); r.code != 2 {
			t.Errorf("set-rpo %v: %+v; want exit 2", args, r)
		}
	}
	if r := cofferd(t, dir, "tenant", "set-rpo", "acme", "1h", "--vm", "bad\x01vm"); r.code != 1 || !strings.Contains(r.stderr, "control character") {
		t.Errorf("a bad VM name: %+v", r)
	}
	cofferd(t, dir, "tenant", "set-rpo", "acme", "24h")
	r := cofferd(t, dir, "--json", "tenant", "set-rpo", "acme", "30m", "--vm", "db01")
	var out tenantRPOOut
	if r.code != 0 || strictJSON(r.stdout, &out) != nil || out.DefaultSeconds != 86400 || out.VMs["db01"] != 1800 || out.Type != "tenant_rpo" {
		t.Fatalf("set-rpo --json: %+v", r)
	}
	if r := cofferd(t, dir, "status", "--tenant", "nobody"); r.code != 1 || !strings.Contains(r.stderr, "no tenant named") {
		t.Fatalf("status of an unknown tenant: %+v", r)
	}
	var st statusOut
	if r := cofferd(t, dir, "--json", "status"); r.code != 1 || json.Unmarshal([]byte(r.stdout), &st) != nil || st.Absent != 1 {
		t.Fatalf("a declared VM of a fresh tenant is absent: %+v", r)
	}
}

// cofferd serve exports the status as gauges on its metrics listener: a
// VM past its objective and a declared VM that never reported as 1, a VM
// within its objective as 0.
func TestServeStatusGauges(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	dir := t.TempDir()
	statusVault(t, dir, time.Now())
	for _, args := range [][]string{{"acme", "1h"}, {"acme", "8000h", "--vm", "web02"}, {"acme", "1h", "--vm", "db01"}} {
		if r := cofferd(t, dir, append([]string{"tenant", "set-rpo"}, args...)...); r.code != 0 {
			t.Fatalf("set-rpo %v: %+v", args, r)
		}
	}
	var id struct{ ID string }
	if r := cofferd(t, dir, "--json", "tenant", "show", "acme"); json.Unmarshal([]byte(r.stdout), &id) != nil {
		t.Fatalf("tenant show: %+v", r)
	}
	sv := startServe(t, dir)
	page := scrape(t, sv.metrics)
	labels := `{tenant="acme",tenant_id="` + id.ID + `",vm="%s"}`
	for series, want := range map[string]float64{
		"coffer_vm_rpo_violated" + fmt.Sprintf(labels, "web01"):                 1,
		"coffer_vm_rpo_violated" + fmt.Sprintf(labels, "web02"):                 0,
		"coffer_vm_rpo_violated" + fmt.Sprintf(labels, "db01"):                  1,
		"coffer_vm_absent" + fmt.Sprintf(labels, "db01"):                        1,
		"coffer_vm_rpo_seconds" + fmt.Sprintf(labels, "web02"):                  8000 * 3600,
		`coffer_tenant_rpo_violations{tenant="acme",tenant_id="` + id.ID + `"}`: 2,
		"coffer_status_up": 1,
	} {
		if got := metricOf(page, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if t.Failed() {
		t.Logf("the page:\n%s", page)
	}
}

// Names agents chose reach the table cleaned: no escape sequence of a VM
// name, drill error or run error acts on the terminal.
func TestStatusTableIsTerminalSafe(t *testing.T) {
	evil := "web\x1b[2J\u202e01"
	rep := jobs.ComputeStatus([]*jobs.TenantInput{{
		Tenant:     &registry.Tenant{ID: "0123456789abcdef01234567", Name: "acme", RPO: &registry.RPO{Default: time.Hour}},
		Receipts:   []jobs.ReceiptSummary{{Name: evil, Time: statusT0.Add(-3 * time.Hour)}},
		Drills:     []*drill.Evidence{{VM: evil, Started: statusT0, Result: drill.Failed, Error: "bad\x1b]0;title\x07"}},
		Runs:       []jobs.RunRecord{{VM: evil, Started: statusT0, Failed: true, Error: "oops\r\x1b[1A"}},
		RunHistory: true,
	}}, statusT0)
	var b strings.Builder
	if err := writeStatus(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.ContainsAny(out, "\x1b\x07\r\u202e") || !strings.Contains(out, `web\x1b[2J`) || !strings.Contains(out, "absent") ||
		!strings.Contains(out, `1: oops\x0d\x1b[1A`) || !strings.Contains(out, `failed: bad\x1b]0;title\x07`) {
		t.Fatalf("table:\n%s", out)
	}
}
