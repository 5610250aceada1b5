package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
)

// simPool is a simulated XenServer pool run by the xapisim binary.
type simPool struct {
	t     *testing.T
	state string
	pw    string // password file
	info  struct{ URL, NBD, Fingerprint, CA string }
}

// xapisim runs the simulator's command line and returns its stdout.
func (p *simPool) xapisim(args ...string) string {
	p.t.Helper()
	cmd := exec.Command(xapisimBin, append(args[:1:1], append([]string{"--state", p.state}, args[1:]...)...)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		p.t.Fatalf("xapisim %v: %v\n%s", args, err, stderr)
	}
	return string(out)
}

// newSimPool makes a pool with VMs (name -> disk sizes; a "+cd" suffix on
// the name adds a CD drive), fills the disks and serves the pool.
func newSimPool(t *testing.T, dir string, vms map[string][]string) *simPool {
	t.Helper()
	p := &simPool{t: t, state: filepath.Join(dir, "pool"), pw: filepath.Join(dir, "pool-password")}
	if err := os.WriteFile(p.pw, []byte("xen-root-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.xapisim("init", "--password-file", p.pw)
	seed := uint64(1)
	for name, sizes := range vms {
		args := []string{"vm", "create", strings.TrimSuffix(name, "+cd")}
		for _, s := range sizes {
			args = append(args, "--disk", s)
		}
		if strings.HasSuffix(name, "+cd") {
			args = append(args, "--cd")
		}
		p.xapisim(args...)
	}
	for name, sizes := range vms {
		for n, s := range sizes {
			var size int64
			fmt.Sscanf(s, "%dM", &size)
			img := filepath.Join(dir, "seed.img")
			if err := diskgen.Generate(img, size<<20, seed, diskgen.Options{}); err != nil {
				t.Fatal(err)
			}
			seed++
			p.xapisim("disk", "import", strings.TrimSuffix(name, "+cd"), fmt.Sprint(n), img)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	serve := exec.CommandContext(ctx, xapisimBin, "serve", "--state", p.state, "--listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0")
	serve.Cancel = func() error { return serve.Process.Signal(syscall.SIGTERM) }
	serve.Stderr = os.Stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = serve.Wait() })
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(p.state, "serve.json"))
		if err == nil && json.Unmarshal(b, &p.info) == nil && p.info.URL != "" {
			break
		}
		if i > 1000 {
			t.Fatal("xapisim serve did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p
}

// listing is what xapisim vm list --json says of the pool.
type listing struct {
	VMs []struct {
		NameLabel  string `json:"name_label"`
		IsSnapshot bool   `json:"is_a_snapshot"`
	} `json:"vms"`
	VDIs []struct {
		Type       string `json:"type"`
		IsSnapshot bool   `json:"is_a_snapshot"`
	} `json:"vdis"`
	Dom0 []any `json:"dom0_attachments"`
	NBD  int   `json:"nbd_connections"`
}

func (p *simPool) list() listing {
	p.t.Helper()
	var l listing
	if err := json.Unmarshal([]byte(p.xapisim("vm", "list", "--json")), &l); err != nil {
		p.t.Fatal(err)
	}
	return l
}

// checkClean: no snapshot VM, no disk attached to the control domain, and
// at most one base (snapshot VDI) per disk of the pool's VMs.
func (p *simPool) checkClean() {
	p.t.Helper()
	l := p.list()
	bases, disks := 0, 0
	for _, v := range l.VDIs {
		if v.IsSnapshot {
			bases++
		} else if v.Type != "iso" {
			disks++
		}
	}
	if bases > disks {
		p.t.Errorf("%d snapshot VDIs left for %d disks: older nights' bases were not removed", bases, disks)
	}
	for _, vm := range l.VMs {
		if vm.IsSnapshot {
			p.t.Errorf("snapshot %q left in the pool", vm.NameLabel)
		}
	}
	if len(l.Dom0) != 0 {
		p.t.Errorf("%d disks left attached to the control domain", len(l.Dom0))
	}
}

// xenAgent is an agent whose config file names the pool, so a nightly
// `coffer backup` needs no flags.
func xenAgent(t *testing.T, p *simPool) *agent {
	t.Helper()
	a := newAgent(t)
	a.ok("init", "--repo", filepath.Join(a.dir, "repo"))
	conf, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	conf = append(conf, fmt.Sprintf("xen:\n  url: %s\n  password_file: %s\n  fingerprint: %s\n  all: true\n", p.info.URL, p.pw, p.info.Fingerprint)...)
	if err := os.WriteFile(a.config, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	return a
}

// vmsOf returns the VMs of a night's JSON summary by name.
func vmsOf(t *testing.T, r result) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, v := range summary(t, r)["vms"].([]any) {
		m := v.(map[string]any)
		out[m["name"].(string)] = m
	}
	return out
}

// Two nights of a pool through the real binaries and the config file: the
// second reads changed blocks; a failing VM makes the night exit 3 with a
// partial error while the others are backed up; restores equal the disks.
func TestXenNightsCommandLine(t *testing.T) {
	dir := t.TempDir()
	p := newSimPool(t, dir, map[string][]string{"web": {"40M", "16M"}, "db+cd": {"24M"}, "mail": {"16M"}})
	a := xenAgent(t, p)
	night := vmsOf(t, a.ok("backup", "--json"))
	if len(night) != 3 {
		t.Fatalf("night 1 backed up %d VMs, want 3", len(night))
	}
	p.checkClean()
	p.xapisim("disk", "write", "web", "0", "--random-blocks", "1", "--seed", "5")
	p.xapisim("disk", "write", "db", "0", "--random-blocks", "1", "--seed", "6")
	night = vmsOf(t, a.ok("backup", "--json"))
	for name, vm := range night {
		for _, d := range vm["disks"].([]any) {
			if read := d.(map[string]any)["read"]; read != "changed" {
				t.Errorf("night 2, VM %s: disk read %v (%v), want changed", name, read, d.(map[string]any)["reason"])
			}
		}
	}
	p.checkClean()
	// A full read on demand reads whole disks and stores nothing new.
	night = vmsOf(t, a.ok("backup", "--full-read", "--json"))
	if d := night["mail"]["disks"].([]any)[0].(map[string]any); d["read"] != "full" || d["bytes_new"].(float64) != 0 {
		t.Errorf("--full-read: disk read %v, %v new bytes; want a full read storing nothing", d["read"], d["bytes_new"])
	}
	for vm, disks := range map[string]int{"web": 2, "db": 1} {
		for n := 0; n < disks; n++ {
			want := filepath.Join(dir, fmt.Sprintf("%s%d.img", vm, n))
			p.xapisim("disk", "export", vm, fmt.Sprint(n), want)
			out := filepath.Join(dir, fmt.Sprintf("%s%d.out", vm, n))
			a.ok("restore", "latest", "--name", vm, "--disk", fmt.Sprint(n), "--to", out)
			sameFile(t, want, out)
		}
	}

	// The web VM recreated in the pool from its latest snapshot: a new
	// VM whose disks equal the originals.
	host := strings.TrimPrefix(p.info.URL, "https://")
	sum := summary(t, a.ok("restore", "latest", "--name", "web", "--to", "xapi://"+host+"/Local%20storage", "--json"))
	vmUUID, _ := sum["vm_uuid"].(string)
	if vdis, _ := sum["vdis"].([]any); vmUUID == "" || len(vdis) != 2 {
		t.Fatalf("restore --to xapi://: summary %v", sum)
	}
	for n := 0; n < 2; n++ {
		got := filepath.Join(dir, fmt.Sprintf("restored-web%d.img", n))
		p.xapisim("disk", "export", vmUUID, fmt.Sprint(n), got)
		sameFile(t, filepath.Join(dir, fmt.Sprintf("web%d.img", n)), got)
	}
	if r := a.run("restore", "latest", "--name", "web", "--to", "xapi://"+host+"/no-such-sr"); r.code != 1 || !strings.Contains(r.stderr, "no-such-sr") {
		t.Fatalf("restore into a missing SR: exit %d\n%s", r.code, r.stderr)
	}

	if r := a.run("check", "--read-data"); r.code != 0 {
		t.Fatalf("check --read-data after XenServer nights exited %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	p.xapisim("switch", "snapshot-fail=web")
	r := a.run("backup", "--json")
	if r.code != exitPartialCode || !strings.Contains(r.stderr, `"kind":"partial"`) {
		t.Fatalf("a night with a failing VM exited %d, want %d with a partial error:\n%s", r.code, exitPartialCode, r.stderr)
	}
	night = vmsOf(t, r)
	if night["web"]["ok"] != false || night["db"]["ok"] != true || night["mail"]["ok"] != true {
		t.Fatalf("night with web failing: %v", night)
	}
	p.checkClean()
}

const exitPartialCode = 3

// Killing the agent at any point of a night (with the pool leaking the
// attachments of killed NBD readers, as real ones do) leaves nothing the
// next run does not clean up: it succeeds, and no snapshot or attachment
// stays in the pool.
func TestXenKillAtAnyPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := t.TempDir()
	p := newSimPool(t, dir, map[string][]string{"web": {"48M", "16M"}, "db": {"32M"}})
	p.xapisim("switch", "leak-attachments")
	a := xenAgent(t, p)
	start := time.Now()
	a.ok("backup")
	clean := time.Since(start)
	for i, frac := range []float64{0.1, 0.3, 0.5, 0.7, 0.9} {
		p.xapisim("disk", "write", "web", "0", "--random-blocks", "5", "--seed", fmt.Sprint(i))
		cmd := a.cmd(context.Background(), "backup")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(frac * float64(clean)))
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		a.ok("backup")
		p.checkClean()
		if t.Failed() {
			t.Fatalf("after a kill at %.0f%% of a night", frac*100)
		}
	}
	want := filepath.Join(dir, "web0.img")
	p.xapisim("disk", "export", "web", "0", want)
	out := filepath.Join(dir, "web0.out")
	a.ok("restore", "latest", "--name", "web", "--to", out)
	sameFile(t, want, out)
}
