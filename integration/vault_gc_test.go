package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
)

// maintVault is a cofferd replica whose clock the test moves through a
// file shared by every cofferd process of the test (hidden --clock-file).
type maintVault struct {
	*vault
	clockFile string
}

// setClock moves every cofferd of the test to real time plus d.
func (m *maintVault) setClock(d time.Duration) {
	m.t.Helper()
	if err := os.WriteFile(m.clockFile, []byte(d.String()), 0o600); err != nil {
		m.t.Fatal(err)
	}
}

// admin runs a cofferd command on the shared clock.
func (m *maintVault) adminAt(args ...string) string {
	m.t.Helper()
	return m.admin(append([]string{"--clock-file", m.clockFile}, args...)...)
}

// waitForNewPacks stops cmd (SIGSTOP) once the store holds more packs
// than before.
func waitForNewPacks(t *testing.T, dir string, before int, cmd *exec.Cmd) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for countPacks(t, dir) <= before {
		if time.Now().After(deadline) {
			t.Fatal("the long backup uploaded no pack")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

func countPacks(t *testing.T, dir string) int { return len(packIDs(t, dir)) }

// packIDs lists the packs of a tenant's repository directory.
func packIDs(t *testing.T, dir string) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	_ = filepath.WalkDir(filepath.Join(dir, "data"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
			ids[d.Name()] = true
		}
		return nil
	})
	return ids
}

// beat lets a stopped agent run long enough to send a heartbeat on the
// moved clock, then stops it again.
func beat(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // heartbeats every second
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// TestVaultGCOverlapsBackups is garbage collection as it must hold in
// production: two replicas serve one tenant while retention and GC run
// beside the backups, a backup runs for longer than GC's grace (its
// session keeps what it uploaded), and a GC killed with SIGKILL between
// condemning and deleting is run again. Every snapshot whose receipt
// exists restores byte-identical, check finds nothing missing, and the
// usage the vault reports is exactly what it stores.
func TestVaultGCOverlapsBackups(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vault")
	storeURL := "file://" + dir
	clockFile := filepath.Join(t.TempDir(), "clock")
	extra := []string{"--clock-file", clockFile, "--session-heartbeat", "1s", "--maintain-every", "0"}
	a := &maintVault{vault: startVaultArgs(t, storeURL, extra...), clockFile: clockFile}
	b := startVaultArgs(t, storeURL, extra...)
	tid, token := a.createTenant("acme", "none")
	tdir := filepath.Join(dir, "repos", tid)
	ag := enrolledAgent(t, token)
	ag.ok("init", "--repo", a.url)
	a.adminAt("tenant", "set-retention", "acme", "--keep-last", "2", "--vm", "vm")

	img := func(name string) string { return filepath.Join(ag.dir, name) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(diskgen.Generate(img("n1"), 48<<20, 1, diskgen.Options{}))
	must(diskgen.Generate(img("n2"), 48<<20, 2, diskgen.Options{}))
	_, err := diskgen.Mutate(img("n2"), img("n3"), 3, diskgen.MutateOptions{ChangedFraction: 0.05})
	must(err)
	must(diskgen.Generate(img("db"), 96<<20, 4, diskgen.Options{}))
	_, err = diskgen.Mutate(img("n3"), img("n4"), 5, diskgen.MutateOptions{ChangedFraction: 0.05})
	must(err)

	ag.ok("--repo", a.url, "backup", "--image", img("n1"), "--name", "vm")
	ag.ok("--repo", b.url, "backup", "--image", img("n2"), "--name", "vm")

	// The long backup, through replica B: stopped once it has uploaded a
	// pack, so that it lives through more than a day of GC's clock.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Slowed down, so the windows in which it runs to send heartbeats
	// do not let it finish.
	long := ag.cmd(ctx, "--repo", b.url, "backup", "--image", img("db"), "--name", "db", "--limit-upload", "2MiB/s", "--json")
	var longOut strings.Builder
	long.Stdout, long.Stderr = &longOut, &longOut
	before := packIDs(t, tdir)
	must(long.Start())
	waitForNewPacks(t, tdir, len(before), long)
	var longPacks []string
	for id := range packIDs(t, tdir) {
		if !before[id] {
			longPacks = append(longPacks, id)
		}
	}

	// Night 3 while the long backup is stopped, then a day later: prune
	// forgets night 1, GC marks its packs (and the long backup's, which
	// no receipt names yet).
	ag.ok("--repo", a.url, "backup", "--image", img("n3"), "--name", "vm")
	a.setClock(25 * time.Hour)
	beat(t, long)
	if out := a.adminAt("prune"); !strings.Contains(out, "removed 1 snapshots") {
		t.Fatalf("prune:\n%s", out)
	}
	var g1 gcJSON
	a.gcJSON(&g1)
	if len(g1.Tenants) != 1 || len(g1.Tenants[0].Deleted) != 0 {
		t.Fatalf("gc a day later: %+v", g1)
	}
	for _, p := range longPacks {
		if !slices.Contains(g1.Tenants[0].Plan.NewMarks, p) {
			t.Fatalf("the long backup's pack %s, named by no receipt yet, was not marked: %+v", p, g1)
		}
	}

	// Two days later the marks are past the grace, but the long backup's
	// session began before them: nothing is condemned.
	a.setClock(50 * time.Hour)
	beat(t, long)
	var g2 gcJSON
	a.gcJSON(&g2)
	if len(g2.Tenants[0].Plan.Condemned) != 0 || len(g2.Tenants[0].Deleted) != 0 {
		st, _ := os.ReadFile(filepath.Join(dir, "vault", "gc", tid+".json"))
		t.Fatalf("gc condemned packs a live session may still name: %+v\nstate: %s", g2, st)
	}

	// The long backup finishes; its receipt takes its packs back.
	must(long.Process.Signal(syscall.SIGCONT))
	if err := long.Wait(); err != nil {
		t.Fatalf("the long backup: %v\n%s", err, longOut.String())
	}

	// A day later GC condemns night 1's packs; it is killed after
	// recording the batch, while night 4 backs up through replica A; run
	// again, it finishes the batch.
	a.setClock(75 * time.Hour)
	a.killGCAfter("batched")
	night4 := ag.cmd(ctx, "--repo", a.url, "backup", "--image", img("n4"), "--name", "vm")
	must(night4.Start())
	var g3 gcJSON
	a.gcJSON(&g3)
	if len(g3.Tenants[0].Deleted) == 0 {
		t.Fatalf("the rerun GC deleted nothing: %+v", g3)
	}
	if err := night4.Wait(); err != nil {
		t.Fatalf("night 4 beside GC: %v", err)
	}
	for _, p := range longPacks {
		if slices.Contains(g3.Tenants[0].Deleted, p) || !packIDs(t, tdir)[p] {
			t.Fatalf("the long backup's pack %s was deleted", p)
		}
	}

	// Every snapshot with a receipt restores byte-identical.
	want := map[string][]string{"vm": {img("n2"), img("n3"), img("n4")}, "db": {img("db")}}
	for name, imgs := range want {
		snaps := snapshotIDs(t, ag, a.url, name)
		if len(snaps) != len(imgs) {
			t.Fatalf("%s: %d snapshots, want %d", name, len(snaps), len(imgs))
		}
		for i, id := range snaps {
			out := filepath.Join(ag.dir, "restored-"+id[:8])
			ag.ok("--repo", b.url, "restore", id[:12], "--to", out)
			sameFile(t, imgs[i], out)
			_ = os.Remove(out)
		}
	}
	a.adminAt("check", "--read-data")
	if stored, _ := a.usage("acme"); stored != dirSize(t, tdir) {
		t.Fatalf("the vault reports %d bytes stored for the tenant; it holds %d", stored, dirSize(t, tdir))
	}
}

// gcJSON is the part of cofferd gc --json the test reads.
type gcJSON struct {
	Tenants []struct {
		Plan struct {
			NewMarks  []string `json:"new_marks"`
			Condemned []string `json:"condemned"`
		} `json:"plan"`
		Deleted []string `json:"deleted"`
	} `json:"tenants"`
}

func (m *maintVault) gcJSON(out *gcJSON) {
	m.t.Helper()
	s := m.adminAt("--json", "gc")
	if err := json.Unmarshal([]byte(s), out); err != nil {
		m.t.Fatalf("gc --json printed %q: %v", s, err)
	}
}

// killGCAfter runs cofferd gc until it says it paused after phase, then
// kills it with SIGKILL.
func (m *maintVault) killGCAfter(phase string) {
	m.t.Helper()
	cmd := exec.Command(cofferdBin, "--store", m.storeURL, "--clock-file", m.clockFile, "gc", "--pause-after", phase)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		m.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	paused := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "paused after "+phase) {
			paused = true
			break
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !paused {
		m.t.Fatalf("cofferd gc never reached %s", phase)
	}
}

// snapshotIDs lists the IDs of name's snapshots, oldest first.
func snapshotIDs(t *testing.T, a *agent, repoURL, name string) []string {
	t.Helper()
	r := a.ok("--repo", repoURL, "--json", "snapshots", "--name", name)
	var snaps []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &snaps); err != nil {
		t.Fatalf("snapshots --json printed %q: %v", r.stdout, err)
	}
	ids := make([]string, len(snaps))
	for i, s := range snaps {
		ids[i] = s.ID
	}
	return ids
}
