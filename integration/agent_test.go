package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/runrecord"
)

// scheduledAgent is an agent with a repository and its own state
// directory (the run history), whose config gets extra lines.
func scheduledAgent(t *testing.T, extra string) *agent {
	t.Helper()
	a := newAgent(t)
	a.env = append(a.env, "XDG_STATE_HOME="+filepath.Join(a.dir, "state"))
	a.ok("init", "--repo", filepath.Join(a.dir, "repo"))
	f, err := os.OpenFile(a.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
	return a
}

// runRecords reads the run records of the agent's repository, as the vault
// would: without keys.
func runRecords(t *testing.T, a *agent) []runrecord.Record {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(a.dir, "repo", "runs", "*"))
	var recs []runrecord.Record
	for _, f := range files {
		b, _ := os.ReadFile(f)
		r, err := runrecord.Parse(b)
		if err != nil || runrecord.Name(b) != "runs/"+filepath.Base(f) {
			t.Fatalf("run record %s: %v", f, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func snapshotNames(t *testing.T, a *agent) []string {
	t.Helper()
	var list []map[string]any
	if err := json.Unmarshal([]byte(a.ok("snapshots", "--json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list {
		names = append(names, fmt.Sprint(s["name"]))
	}
	sort.Strings(names)
	return names
}

// coffer agent --once backs up the VMs of a pool its include and exclude
// rules choose, and records the run for the vault.
func TestAgentXenPoolRules(t *testing.T) {
	dir := t.TempDir()
	p := newSimPool(t, dir, map[string][]string{"web-1": {"16M"}, "web-2": {"8M"}, "web-test": {"8M"}, "db": {"8M"}})
	a := scheduledAgent(t, fmt.Sprintf(`schedule: {cron: "0 2 * * *"}
pools:
  - url: %s
    password_file: %s
    fingerprint: %s
    include: ["web-*"]
    exclude: ["*-test"]
    tags: [agent]
`, p.info.URL, p.pw, p.info.Fingerprint))
	a.ok("agent", "--once")
	if got := fmt.Sprint(snapshotNames(t, a)); got != "[web-1 web-2]" {
		t.Fatalf("the agent backed up %s, want [web-1 web-2]", got)
	}
	recs := runRecords(t, a)
	if len(recs) != 1 || recs[0].Result != runrecord.ResultOK || len(recs[0].Snapshots) != 2 || recs[0].Bytes <= 0 {
		t.Fatalf("run records %+v", recs)
	}
	p.checkClean()
	var hist struct {
		Runs []runrecord.Record `json:"runs"`
	}
	if err := json.Unmarshal([]byte(a.ok("agent", "--history", "--json").stdout), &hist); err != nil || len(hist.Runs) != 1 {
		t.Fatalf("--history: %v %+v", err, hist)
	}
}

// SIGTERM to a running `coffer agent` in the middle of a run (one missed
// while it was not running, so it starts at once): exit 0, the run recorded
// interrupted; the next run completes and reuses what the stopped one
// stored.
func TestAgentSIGTERM(t *testing.T) {
	a := newAgent(t)
	img := filepath.Join(a.dir, "big.img")
	data := make([]byte, 48<<20)
	rand.Read(data)
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	a = scheduledAgent(t, fmt.Sprintf("schedule: {cron: \"0 2 * * *\"}\nbandwidth: {upload: 16MiB}\nimages: [{path: %s, name: big}]\n", img))
	// A history whose last run was three days ago: a run is overdue.
	past := time.Now().Add(-72 * time.Hour).UTC()
	old := runrecord.Record{Version: runrecord.Version, AgentVersion: "test", Scheduled: past, Started: past, Finished: past.Add(time.Minute),
		Result: runrecord.ResultOK, Attempts: 1, Snapshots: []string{}}
	hb, _ := json.Marshal([]runrecord.Record{old})
	stateDir := filepath.Join(a.dir, "state", "coffer", "agent")
	os.MkdirAll(stateDir, 0o700)
	if err := os.WriteFile(filepath.Join(stateDir, "agent-history.json"), hb, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := a.cmd(ctx, "agent")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for stored := false; !stored; time.Sleep(10 * time.Millisecond) {
		packs, _ := filepath.Glob(filepath.Join(a.dir, "repo", "data", "*", "[0-9a-f]*"))
		for _, p := range packs {
			if fi, err := os.Stat(p); err == nil && fi.Size() > 8<<20 {
				stored = true
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("no pack was stored:\n%s", stderr.String())
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("coffer agent after SIGTERM: %v, want exit 0\n%s", err, stderr.String())
	}
	recs := runRecords(t, a)
	if len(recs) != 1 || recs[0].Result != runrecord.ResultInterrupted || !recs[0].Scheduled.After(past) {
		t.Fatalf("after SIGTERM: records %+v, want one interrupted run\n%s", recs, stderr.String())
	}
	a.ok("agent", "--once")
	var done runrecord.Record
	for _, r := range runRecords(t, a) {
		if r.Result == runrecord.ResultOK {
			done = r
		}
	}
	if len(done.Snapshots) != 1 || done.Bytes > int64(len(data))-4<<20 {
		t.Fatalf("the run after the stop: %+v (stored %d of %d bytes: the stopped run's packs were not reused)", done, done.Bytes, len(data))
	}
	if got := fmt.Sprint(snapshotNames(t, a)); got != "[big]" {
		t.Fatalf("snapshots %s", got)
	}
}
