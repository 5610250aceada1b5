package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/agent"
	"github.com/cofferhq/coffer/internal/runrecord"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// agentSetup makes a repository and an agent config backing up images;
// images: comes last, so a test may append to it.
func agentSetup(t *testing.T, extra string, images ...string) (dir, conf, repoDir string) {
	t.Helper()
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	dir = t.TempDir()
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	conf = filepath.Join(dir, "coffer.yaml")
	repoDir = filepath.Join(dir, "repo")
	if r := runCoffer(t, "--config", conf, "init", "--repo", repoDir); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	var b strings.Builder
	b.WriteString("schedule: {cron: '30 1 * * *', timezone: Europe/Berlin}\nhistory: 2\n" + extra + "images:\n")
	for _, im := range images {
		b.WriteString("  - {path: " + im + "}\n")
	}
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(b.String())
	f.Close()
	return dir, conf, repoDir
}

// storedRecords parses every run record in the repository without keys.
func storedRecords(t *testing.T, repoDir string) []agent.Record {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoDir, "runs", "*"))
	var recs []agent.Record
	for _, f := range files {
		b, _ := os.ReadFile(f)
		r, err := runrecord.Parse(b)
		if err != nil || "runs/"+filepath.Base(f) != runrecord.Name(b) {
			t.Fatalf("run record %s: %v", f, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// coffer agent --once backs up the config's images, stores a run record
// the vault can read, and keeps the last runs for --history.
func TestAgentOnce(t *testing.T) {
	dir, conf, repoDir := agentSetup(t, "")
	img := writeImage(t, dir, "web.img", 200<<10, "web data ")
	f, _ := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("  - {path: " + img + ", name: web, tags: [nightly]}\n")
	f.Close()

	r := runCoffer(t, "--json", "agent", "--check-config", conf)
	var check struct {
		Valid    bool        `json:"valid"`
		NextRuns []time.Time `json:"next_runs"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &check) != nil || !check.Valid || len(check.NextRuns) != 5 {
		t.Fatalf("--check-config: %+v", r)
	}
	if l := check.NextRuns[0].In(mustZone(t, "Europe/Berlin")); l.Hour() != 1 || l.Minute() != 30 {
		t.Errorf("the next run is at %s, want 01:30 in Berlin", l)
	}
	for i := range 3 {
		if r := runCoffer(t, "--config", conf, "agent", "--once"); r.code != 0 {
			t.Fatalf("agent --once (%d): exit %d\n%s", i, r.code, r.stderr)
		}
	}
	recs := storedRecords(t, repoDir)
	if len(recs) != 3 {
		t.Fatalf("%d run records in the repository, want 3", len(recs))
	}
	for _, rec := range recs {
		if rec.Result != agent.ResultOK || len(rec.Snapshots) != 1 || rec.NextRun.IsZero() {
			t.Errorf("record %+v", rec)
		}
	}
	r = runCoffer(t, "--config", conf, "--json", "agent", "--history")
	var hist struct {
		Runs []agent.Record `json:"runs"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &hist) != nil || len(hist.Runs) != 2 {
		t.Fatalf("--history keeps the last 2: %+v", r)
	}
	r = runCoffer(t, "--config", conf, "--json", "snapshots")
	if r.code != 0 || !strings.Contains(r.stdout, `"web"`) || !strings.Contains(r.stdout, "nightly") {
		t.Fatalf("snapshots after the agent's runs: %+v", r)
	}
}

func mustZone(t *testing.T, name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Mistakes in the config file are usage errors (exit 2) naming the line,
// and a run that cannot succeed is recorded as failed without retries.
func TestAgentConfigErrors(t *testing.T) {
	dir, conf, repoDir := agentSetup(t, "retries: {attempts: 1}\n", "/nonexistent/disk.img")
	if r := runCoffer(t, "--config", conf, "agent", "--once"); r.code != 1 || !strings.Contains(r.stderr, "/nonexistent/disk.img") {
		t.Fatalf("a missing image: %+v", r)
	}
	if recs := storedRecords(t, repoDir); len(recs) != 1 || recs[0].Result != agent.ResultFailed || !strings.Contains(recs[0].Error, "nonexistent") {
		t.Fatalf("records %+v", recs)
	}
	release, err := agent.Lock(filepath.Join(dir, "state", "coffer", "agent"))
	if err != nil {
		t.Fatal(err)
	}
	if r := runCoffer(t, "--config", conf, "agent", "--once"); r.code != 1 || !strings.Contains(r.stderr, "another coffer agent is running") {
		t.Fatalf("an agent while another runs: %+v", r)
	}
	release()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("repository: /r\nschedule: {cron: '@daily'}\nimages: [{path: /x}]\nbandwith: {upload: 1Mbit}\n"), 0o600)
	if r := runCoffer(t, "agent", "--check-config", bad); r.code != 2 || !strings.Contains(r.stderr, `line 4: unknown key "bandwith"`) {
		t.Fatalf("--check-config of a misspelt key: %+v", r)
	}
	os.WriteFile(bad, []byte("schedule: {cron: '@daily'}\nimages: [{path: /x}]\n"), 0o600)
	if r := runCoffer(t, "agent", "--check-config", bad); r.code != 2 || !strings.Contains(r.stderr, "no repository") {
		t.Fatalf("--check-config without a repository: %+v", r)
	}
}

// SIGTERM in the middle of a run: the agent stops cleanly (exit 0) and
// records the run as interrupted; the next run resumes with the packs the
// stopped one stored (and finished after the stop) instead of sending them
// again.
func TestAgentStopResumes(t *testing.T) {
	dir, conf, repoDir := agentSetup(t, "bandwidth: {upload: 24MiB}\n")
	img := filepath.Join(dir, "big.img")
	data := make([]byte, 40<<20)
	rand.Read(data)
	os.WriteFile(img, data, 0o600)
	f, _ := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("  - {path: " + img + "}\n")
	f.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var first atomic.Int64
	go func() { // SIGTERM once a full pack is stored
		defer cancel()
		for ctx.Err() == nil {
			packs, _ := filepath.Glob(filepath.Join(repoDir, "data", "*", "[0-9a-f]*")) // not temporary files (.tmp-…)
			for _, p := range packs {
				if fi, err := os.Stat(p); err == nil && fi.Size() > 8<<20 {
					first.Store(fi.Size())
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"--config", conf, "agent", "--once"}, &out, &errb); code != 0 {
		t.Fatalf("agent stopped mid-run: exit %d, want 0\n%s", code, errb.String())
	}
	if first.Load() == 0 {
		t.Fatal("the run ended before a pack was stored")
	}
	recs := storedRecords(t, repoDir)
	if len(recs) != 1 || recs[0].Result != agent.ResultInterrupted || len(recs[0].Snapshots) != 0 {
		t.Fatalf("after the stop: records %+v, want one interrupted run", recs)
	}
	if r := runCoffer(t, "--config", conf, "agent", "--once"); r.code != 0 {
		t.Fatalf("the next run: %+v", r)
	}
	var next agent.Record
	for _, rec := range storedRecords(t, repoDir) {
		if rec.Result == agent.ResultOK {
			next = rec
		}
	}
	// The stop finished the packs already handed to the uploaders, so the
	// next run may have nothing left to send.
	if len(next.Snapshots) != 1 || next.Bytes < 0 || next.Bytes > int64(len(data))+1<<20-first.Load() {
		t.Fatalf("the run after the stop stored %d new bytes of %d: the stopped run's packs were not reused (%+v)", next.Bytes, len(data), next)
	}
}

// coffer backup --limit-upload holds a backup to the rate; a rate that is
// not one is a usage error.
func TestBackupLimitUpload(t *testing.T) {
	dir, conf, _ := agentSetup(t, "")
	img := filepath.Join(dir, "r.img")
	data := make([]byte, 3<<20)
	rand.Read(data)
	os.WriteFile(img, data, 0o600)
	start := time.Now()
	if r := runCoffer(t, "--config", conf, "--quiet", "backup", "--image", img, "--limit-upload", "2MiB/s"); r.code != 0 {
		t.Fatalf("backup: %+v", r)
	}
	// 3 MiB at 2 MiB/s, less the first bucket.
	if d := time.Since(start); d < 1400*time.Millisecond {
		t.Errorf("3 MiB under a 2 MiB/s limit took %v", d)
	}
	if r := runCoffer(t, "--config", conf, "backup", "--image", img, "--limit-upload", "fast"); r.code != 2 || !strings.Contains(r.stderr, "--limit-upload") {
		t.Fatalf("a bad rate: %+v", r)
	}
}

// Through a vault, the agent's run record lands in the tenant's repository
// under runs/, where the vault reads it without keys.
func TestAgentThroughVault(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv(vaultclient.EnvCredential, "")
	v, srv := newTestVault(t)
	dir := t.TempDir()
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	conf := filepath.Join(dir, "coffer.yaml")
	v.configPath = conf
	t.Setenv(EnvEnrollToken, v.token())
	if r := runCoffer(t, "--config", conf, "init", "--repo", srv.URL); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	t.Setenv(EnvEnrollToken, "")
	img := writeImage(t, dir, "web.img", 200<<10, "web01 ")
	f, _ := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("schedule: {cron: '@daily'}\nimages: [{path: " + img + ", name: web01}]\n")
	f.Close()
	if r := runCoffer(t, "--config", conf, "agent", "--once"); r.code != 0 {
		t.Fatalf("agent --once: %+v", r)
	}
	var names []string
	v.st.List(t.Context(), "", func(i store.Info) error {
		if strings.Contains(i.Name, runrecord.Prefix) {
			names = append(names, i.Name)
		}
		return nil
	})
	if len(names) != 1 {
		t.Fatalf("the vault's store holds run records %v, want one", names)
	}
	b, err := store.ReadAll(t.Context(), v.st, names[0])
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := runrecord.Parse(b); err != nil || rec.Result != runrecord.ResultOK || len(rec.Snapshots) != 1 {
		t.Fatalf("the record the vault holds: %+v, %v", rec, err)
	}
}
