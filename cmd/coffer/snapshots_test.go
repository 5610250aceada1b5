package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// agentEnv is a local repository and the agent's environment (config,
// cache and state directories) in a temporary directory.
type agentEnv struct {
	t              *testing.T
	dir, repoDir   string
	config, image  string
	repoURL, state string
}

func newAgentEnv(t *testing.T) *agentEnv {
	dir := t.TempDir()
	e := &agentEnv{t: t, dir: dir, repoDir: filepath.Join(dir, "repo"), config: filepath.Join(dir, "coffer.yaml"),
		image: filepath.Join(dir, "disk.img"), state: filepath.Join(dir, "state")}
	e.repoURL = "file://" + e.repoDir
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "correct horse")
	t.Setenv("XDG_STATE_HOME", e.state)
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	if r := e.run("init", "--repo", e.repoURL); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	return e
}

func (e *agentEnv) run(args ...string) runResult {
	e.t.Helper()
	return runCoffer(e.t, append([]string{"--config", e.config}, args...)...)
}

// backup writes a 2 MiB image from seed and backs it up under name,
// returning the snapshot ID.
func (e *agentEnv) backup(name string, seed uint64) string {
	e.t.Helper()
	b := make([]byte, 2<<20)
	rnd := rand.New(rand.NewPCG(seed, 5))
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	if err := os.WriteFile(e.image, b, 0o600); err != nil {
		e.t.Fatal(err)
	}
	r := e.run("backup", "--image", e.image, "--name", name, "--json")
	if r.code != 0 {
		e.t.Fatalf("backup: %+v", r)
	}
	i := strings.Index(r.stdout, `"snapshot_id":"`)
	if i < 0 {
		e.t.Fatalf("no snapshot ID in %s", r.stdout)
	}
	return r.stdout[i+len(`"snapshot_id":"`):][:64]
}

func (e *agentEnv) store() *store.Local {
	st, err := store.OpenLocal(e.repoDir, false)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// plantJunk stores 500 random bytes under the name a vault would accept
// for them (prefix + their SHA-256).
func (e *agentEnv) plantJunk(prefix string) string {
	b := bytes.Repeat([]byte("junk"), 125)
	sum := sha256.Sum256(b)
	name := prefix + hex.EncodeToString(sum[:])
	if err := e.store().Put(e.t.Context(), name, bytes.NewReader(b), int64(len(b))); err != nil {
		e.t.Fatal(err)
	}
	return name
}

// TestJunkSnapshotDoesNotBreakRestore: a junk snapshot planted in the
// repository makes snapshots and restore latest warn, naming it, and still
// work; check reports it as foreign and passes; nothing is removed.
func TestJunkSnapshotDoesNotBreakRestore(t *testing.T) {
	e := newAgentEnv(t)
	id := e.backup("web01", 1)
	junk := e.plantJunk(repo.SnapshotsPrefix)

	r := e.run("snapshots")
	if r.code != 0 || !strings.Contains(r.stdout, id[:12]) || !strings.Contains(r.stderr, "skipping snapshot "+strings.TrimPrefix(junk, repo.SnapshotsPrefix)) ||
		!strings.Contains(r.stderr, "not an object of this repository") || !strings.Contains(r.stderr, "delete "+junk) {
		t.Fatalf("snapshots with a junk snapshot: %+v", r)
	}
	out := filepath.Join(e.dir, "out.img")
	r = e.run("restore", "latest", "--name", "web01", "--to", out)
	if r.code != 0 || !strings.Contains(r.stdout, id[:12]) || !strings.Contains(r.stderr, "not an object of this repository") {
		t.Fatalf("restore latest with a junk snapshot: %+v", r)
	}
	got, _ := os.ReadFile(out)
	want, _ := os.ReadFile(e.image)
	if !bytes.Equal(got, want) {
		t.Fatal("restored image differs")
	}
	r = e.run("check")
	if r.code != 0 || !strings.Contains(r.stdout, "foreign: "+junk) || strings.Contains(r.stdout, "error:") {
		t.Fatalf("check with a junk snapshot: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(e.repoDir, filepath.FromSlash(junk))); err != nil {
		t.Fatalf("the junk object is gone: %v", err)
	}
}

// TestRollbackIsWarned: when the repository stops showing the newest
// snapshot this machine wrote, snapshots and restore latest warn and name
// it; the exit code is unchanged.
func TestRollbackIsWarned(t *testing.T) {
	e := newAgentEnv(t)
	older := e.backup("web01", 1)
	time.Sleep(10 * time.Millisecond)
	newest := e.backup("web01", 2)
	if r := e.run("snapshots"); r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Fatalf("snapshots before the rollback: %+v", r)
	}
	// The store hides the newest snapshot.
	p := filepath.Join(e.repoDir, "snapshots", newest)
	if err := os.Rename(p, filepath.Join(e.dir, "hidden")); err != nil {
		t.Fatal(err)
	}
	r := e.run("snapshots", "--name", "web01")
	if r.code != 0 || !strings.Contains(r.stderr, "wrote snapshot "+newest[:12]) || !strings.Contains(r.stderr, older[:12]) ||
		!strings.Contains(r.stderr, "hiding newer snapshots") {
		t.Fatalf("snapshots after the rollback: %+v", r)
	}
	r = e.run("restore", "latest", "--name", "web01", "--to", filepath.Join(e.dir, "out.img"))
	if r.code != 0 || !strings.Contains(r.stderr, "wrote snapshot "+newest[:12]) || !strings.Contains(r.stdout, older[:12]) {
		t.Fatalf("restore latest after the rollback: %+v", r)
	}
	if r := e.run("snapshots", "--name", "db01"); r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Fatalf("snapshots of another name: %+v", r)
	}
}

// TestSnapshotsOutputIsTerminalSafe: a host and source path another
// machine wrote into a snapshot reach the terminal without escape
// sequences or bidi overrides.
func TestSnapshotsOutputIsTerminalSafe(t *testing.T) {
	e := newAgentEnv(t)
	e.backup("web01", 1)
	rp, err := repo.Open(t.Context(), e.store(), []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	all, err := rp.Snapshots(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := *all[0].Snapshot
	s.Host = "evil\x1b]0;owned\x07host"
	s.Source = manifest.Source{Kind: "image", Path: "/dev/\u202egpj.exe\x9b2J"}
	s.Time = s.Time.Add(time.Second)
	if _, err := rp.SaveSnapshot(t.Context(), &s); err != nil {
		t.Fatal(err)
	}
	r := e.run("snapshots")
	if r.code != 0 {
		t.Fatalf("snapshots: %+v", r)
	}
	for _, bad := range []string{"\x1b", "\x07", "\u202e", "\u009b"} {
		if strings.Contains(r.stdout+r.stderr, bad) {
			t.Errorf("output holds %q: %q", bad, r.stdout)
		}
	}
	for _, want := range []string{`evil\x1b]0;owned\x07host`, `\u202egpj.exe`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q: %q", want, r.stdout)
		}
	}
}

// TestCheckBesideRunningBackup: packs uploaded but not yet indexed by a
// backup running on this machine (it holds its run mark) are not warned
// about; once no backup runs, they are.
func TestCheckBesideRunningBackup(t *testing.T) {
	e := newAgentEnv(t)
	e.backup("web01", 1)
	st := e.store()
	var idx []string
	if err := st.List(t.Context(), repo.IndexPrefix, func(i store.Info) error { idx = append(idx, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	for _, n := range idx { // as if the running backup had not written them yet
		if err := st.Delete(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
	cfg, _, _, err := repo.ReadConfig(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	runs := filepath.Join(e.dir, "cache", "coffer", "runs", cfg.ID)
	if err := os.MkdirAll(runs, 0o700); err != nil {
		t.Fatal(err)
	}
	mark, err := os.Create(filepath.Join(runs, "run-00000000000000bb"))
	if err != nil {
		t.Fatal(err)
	}
	defer mark.Close()
	if err := syscall.Flock(int(mark.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	r := e.run("check")
	if r.code != 0 || strings.Contains(r.stdout, "warning:") || !strings.Contains(r.stdout, "not indexed yet") {
		t.Fatalf("check beside a running backup: %+v", r)
	}
	mark.Close()
	r = e.run("check")
	if r.code != 0 || !strings.Contains(r.stdout, "warning: data/") || !strings.Contains(r.stdout, "in no intact index file") {
		t.Fatalf("check after the backup died: %+v", r)
	}
}
