package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/drill"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
)

// stepClock advances by step on every reading, so a drill (which reads the
// clock when it starts and when it ends) takes exactly step.
type stepClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(c.step)
	return c.now
}

func (c *stepClock) Sleep(ctx context.Context, _ time.Duration) error { return ctx.Err() }

// cofferdAt runs cofferd on storeDir with clock clk.
func cofferdAt(t *testing.T, storeDir string, clk *stepClock, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdout: &out, stderr: &errb, log: slog.New(slog.NewTextHandler(io.Discard, nil)), clock: clk}
	code := runGlobals(context.Background(), g, append([]string{"--store", "file://" + storeDir}, args...))
	return result{code, out.String(), errb.String()}
}

// tamperPacks flips a byte in the middle of every pack of the tenant's
// repository.
func tamperPacks(t *testing.T, repoDir string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(repoDir, "data"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b[len(b)/2] ^= 0x10
		n++
		return os.WriteFile(p, b, 0o600)
	})
	if err != nil || n == 0 {
		t.Fatalf("tampering: %d packs, %v", n, err)
	}
}

// The vault drills a tenant with escrow (verify-only), measures the RTO
// against the objective, skips a tenant without escrow, stores evidence,
// fails a tampered snapshot, and reports all of it as a table and JSON.
func TestDrillEvidence(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	dir := t.TempDir()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := diskgen.Generate(img, 6<<20+4321, 3, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	idFile := escrowTenant(t, dir, "acme", true, img)
	escrowTenant(t, dir, "solo", false, img)
	if r := cofferd(t, dir, "tenant", "set-rto", "acme", "2m"); r.code != 0 || !strings.Contains(r.stdout, "recovery time objective 2m0s") {
		t.Fatalf("set-rto: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "show", "acme"); r.code != 0 || !strings.Contains(r.stdout, "rto:       2m0s") {
		t.Fatalf("tenant show after set-rto: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "set-rto", "acme", "soon"); r.code != 2 {
		t.Fatalf("set-rto soon: %+v", r)
	}
	clk := &stepClock{now: time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC), step: 90 * time.Second}

	// Passing, within the tenant's objective.
	out := drillJSON(t, dir, clk, 0, "--json", "drill", "--escrow-key", idFile)
	if out.Passed != 1 || out.Failed != 0 || len(out.Drills) != 1 || len(out.Skipped) != 1 ||
		out.Skipped[0].Tenant != "solo" || out.Skipped[0].Reason != skipNoEscrow {
		t.Fatalf("drill: %+v", out)
	}
	e := out.Drills[0]
	if e.Tenant != "acme" || e.VM != "web01" || !e.Passed() || e.Target != drill.TargetVerifyOnly || e.RunBy != drill.ByVault ||
		e.DurationSeconds != 90 || e.RTOObjectiveSeconds != 120 || e.RTO != drill.RTOMet || e.Size != 6<<20+4321 || e.Fetched == 0 {
		t.Fatalf("evidence: %+v", e)
	}
	// A VM's own objective, missed; into scratch space.
	scratch := t.TempDir()
	out = drillJSON(t, dir, clk, 0, "--json", "drill", "--tenant", "acme", "--name", "web01", "--rto-vm", "web01=1m",
		"--scratch", scratch, "--pick", "random", "--escrow-key", idFile)
	if e := out.Drills[0]; !e.Passed() || e.RTO != drill.RTOMissed || e.RTOObjectiveSeconds != 60 || e.Target != drill.ScratchTarget(scratch) {
		t.Fatalf("missed objective: %+v", e)
	}
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Fatalf("the scratch copy was left: %v", ents)
	}

	repoDir := tenantRepoDir(t, dir)
	tamperPacks(t, repoDir)
	out = drillJSON(t, dir, clk, 1, "--json", "drill", "--tenant", "acme", "--escrow-key", idFile)
	if e := out.Drills[0]; out.Failed != 1 || e.Passed() || e.RTO != drill.RTOMissed || !strings.Contains(e.Error, "damaged") {
		t.Fatalf("tampered: %+v", out.Drills[0])
	}
	checkDrillReport(t, dir, clk)
	r := cofferdAt(t, dir, clk, "drill", "--escrow-key", idFile)
	if r.code != 1 || !strings.Contains(r.stdout, "skipped: tenant solo: "+skipNoEscrow) || !strings.Contains(r.stdout, "0 passed, 1 failed") ||
		!strings.Contains(r.stdout, "error: disk 0") || !strings.Contains(r.stderr, "1 of 1 drills failed") {
		t.Fatalf("drill as text: %+v", r)
	}

	if r := cofferdAt(t, dir, clk, "drill", "--escrow-key", filepath.Join(t.TempDir(), "none")); r.code != 2 {
		t.Fatalf("a missing escrow key file: %+v", r)
	}
	other, err := crypto.GenerateEscrowKey(true)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	if err := os.WriteFile(wrong, []byte(other.Identity()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := cofferdAt(t, dir, clk, "drill", "--escrow-key", wrong); r.code != 12 || strings.Contains(r.stderr, other.Identity()) {
		t.Fatalf("a wrong escrow identity: %+v; want exit 12", r)
	}
	if r := cofferdAt(t, dir, clk, "drill", "--report", "--name", "web01"); r.code != 2 || !strings.Contains(r.stderr, "--name is for running drills") {
		t.Fatalf("--report --name: %+v", r)
	}
	if r := cofferdAt(t, dir, clk, "drill", "--escrow-key", idFile, "--scratch", filepath.Join(dir, "nowhere")); r.code != 2 || !strings.Contains(r.stderr, "existing directory") {
		t.Fatalf("a missing --scratch: %+v", r)
	}
	if r := cofferdAt(t, dir, clk, "drill", "--escrow-key", idFile, "--pick", "oldest"); r.code != 2 {
		t.Fatalf("--pick oldest: %+v", r)
	}
	if r := cofferdAt(t, dir, clk, "drill", "--escrow-key", idFile, "--rto-vm", "web01"); r.code != 2 || !strings.Contains(r.stderr, "NAME=DURATION") {
		t.Fatalf("a bad --rto-vm: %+v", r)
	}
}

// drillJSON runs a drill that must exit code and decodes its document.
func drillJSON(t *testing.T, dir string, clk *stepClock, code int, args ...string) drillOut {
	t.Helper()
	r := cofferdAt(t, dir, clk, args...)
	var out drillOut
	if r.code != code || json.Unmarshal([]byte(r.stdout), &out) != nil {
		t.Fatalf("%v: %+v; want exit %d", args, r, code)
	}
	return out
}

// tenantRepoDir is the one escrow tenant's repository with packs.
func tenantRepoDir(t *testing.T, dir string) string {
	t.Helper()
	r := cofferd(t, dir, "--json", "tenant", "show", "acme")
	var info struct{ ID string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &info) != nil || info.ID == "" {
		t.Fatalf("tenant show: %+v", r)
	}
	return filepath.Join(dir, "repos", info.ID)
}

// checkDrillReport checks the three drills' evidence in both forms.
func checkDrillReport(t *testing.T, dir string, clk *stepClock) {
	t.Helper()
	r := cofferdAt(t, dir, clk, "--json", "drill", "--report")
	var rep drillReportOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || len(rep.Drills) != 3 || len(rep.Unreadable) != 0 {
		t.Fatalf("report --json: %+v", r)
	}
	var got []string
	for _, e := range rep.Drills {
		got = append(got, e.Result+"/"+e.RTO)
	}
	if strings.Join(got, ",") != "passed/met,passed/missed,failed/missed" {
		t.Fatalf("report order and results: %v", got)
	}
	for _, field := range []string{`"snapshot_id"`, `"started"`, `"finished"`, `"duration_seconds": 90`, `"rto_objective_seconds": 120`, `"bytes_fetched"`, `"error"`} {
		if !strings.Contains(r.stdout, field) {
			t.Errorf("report JSON lacks %s", field)
		}
	}
	r = cofferdAt(t, dir, clk, "drill", "--report", "--tenant", "acme")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 5 || !strings.Contains(lines[0], "RTO OBJECTIVE") ||
		!strings.Contains(lines[1], "1m30s") || !strings.Contains(lines[1], "2m0s") || !strings.Contains(lines[1], " met ") || !strings.HasSuffix(lines[1], "passed") ||
		!strings.HasSuffix(lines[3], "failed") || !strings.Contains(lines[4], "error: disk 0") {
		t.Fatalf("report table:\n%s", r.stdout)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "vault", "drills", "*", "*.json"))
	sort.Strings(files)
	if len(files) != 3 {
		t.Fatalf("evidence objects: %v", files)
	}
}

// Evidence a tenant's agent stored in its repository (coffer drill) shows
// in the report under the tenant's name; junk there, or a record claiming
// the vault ran it, is listed as unreadable.
func TestDrillReportAgentEvidence(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	dir := t.TempDir()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := diskgen.Generate(img, 2<<20+77, 3, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	escrowTenant(t, dir, "solo", false, img)
	r := cofferd(t, dir, "--json", "tenant", "show", "solo")
	var info struct{ ID string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &info) != nil {
		t.Fatalf("tenant show: %+v", r)
	}
	ts, err := store.OpenLocal(filepath.Join(dir, "repos", info.ID), false)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := repo.Open(t.Context(), ts, []byte("tenant passphrase"))
	if err == nil {
		err = rp.LoadIndex(t.Context(), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	snap, err := rp.FindSnapshot(t.Context(), "latest", "web01")
	if err != nil {
		t.Fatal(err)
	}
	e := drill.Run(t.Context(), rp, snap, drill.Options{RunBy: drill.ByAgent})
	claim := *e
	claim.RunBy = drill.ByVault
	for _, ev := range []*drill.Evidence{e, &claim} {
		b, _ := ev.Marshal()
		if err := ts.Put(t.Context(), drill.AgentName(b), store.Bytes(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	junk := []byte("{not json")
	if err := ts.Put(t.Context(), drill.AgentName(junk), store.Bytes(junk), int64(len(junk))); err != nil {
		t.Fatal(err)
	}
	r = cofferd(t, dir, "--json", "drill", "--report")
	var rep drillReportOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || len(rep.Drills) != 1 || len(rep.Unreadable) != 2 {
		t.Fatalf("report: %+v", r)
	}
	if got := rep.Drills[0]; got.Tenant != "solo" || got.TenantID != info.ID || got.RunBy != drill.ByAgent || !got.Passed() {
		t.Fatalf("agent evidence: %+v", got)
	}
	r = cofferd(t, dir, "drill", "--report", "--tenant", "solo")
	if r.code != 0 || !strings.Contains(r.stdout, "agent") || strings.Count(r.stdout, "unreadable evidence repos/"+info.ID+"/drills/") != 2 ||
		!strings.Contains(r.stdout, "says run_by vault") {
		t.Fatalf("report table: %+v", r)
	}
}

// cofferd serve --drill-every runs rounds of drills on the injected clock,
// one at a time, storing evidence as cofferd drill does.
func TestServeDrillLoop(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	dir := t.TempDir()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := diskgen.Generate(img, 1<<20+5, 3, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	idFile := escrowTenant(t, dir, "acme", true, img)
	t0 := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	clk := clocktest.New(t0)
	var logs bytes.Buffer
	g := &globals{storeURL: "file://" + dir, clock: clk, log: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rounds []*drillOut
	g.drillLoop(ctx, &serveDrills{every: 6 * time.Hour, escrowKey: idFile}, func(out *drillOut, err error) {
		if err != nil {
			t.Errorf("round %d: %v", len(rounds), err)
		}
		rounds = append(rounds, out)
		if len(rounds) == 2 {
			cancel()
		}
	})
	if len(rounds) != 2 || rounds[0].Passed != 1 || rounds[1].Passed != 1 {
		t.Fatalf("rounds: %+v", rounds)
	}
	if s := rounds[1].Drills[0].Started; !s.Equal(t0.Add(12 * time.Hour)) {
		t.Fatalf("the second round started at %v, want 12h after %v", s, t0)
	}
	if !strings.Contains(logs.String(), "drill passed") || !strings.Contains(logs.String(), "vm=web01") {
		t.Fatalf("logs: %s", logs.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, "vault", "drills", "*", "*.json"))
	if len(files) != 2 {
		t.Fatalf("evidence objects: %v", files)
	}
	for _, c := range []struct {
		d    serveDrills
		want string
	}{
		{serveDrills{every: -time.Hour}, "negative"},
		{serveDrills{every: time.Hour}, "needs --escrow-key"},
		{serveDrills{every: time.Second, escrowKey: idFile}, "at least 1m"},
		{serveDrills{escrowKey: idFile}, "give --drill-every"},
		{serveDrills{every: time.Hour, escrowKey: filepath.Join(dir, "missing")}, "--escrow-key"},
	} {
		if err := c.d.validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.d, err, c.want)
		}
	}
	if err := (&serveDrills{every: time.Hour, escrowKey: idFile}).validate(); err != nil {
		t.Fatal(err)
	}
}
