package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/vaultclient"
	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
)

// xenSim is a simulated pool serving one VM "web" with one disk.
type xenSim struct {
	sim  *xapisim.Sim
	args []string // the coffer flags that reach it
}

func startXenSim(t *testing.T, size int64) *xenSim {
	t.Helper()
	dir := t.TempDir()
	const poolPassword = "pool password"
	sim, err := xapisim.Init(filepath.Join(dir, "state"), poolPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.CreateVM("web", []int64{size}, false); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "disk.img")
	if err := diskgen.Generate(img, size, 5, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := sim.Import(xapisim.DiskRef{VM: "web"}, img); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, xapisim.ServeConfig{Listen: "127.0.0.1:0", NBDListen: "127.0.0.1:0"}) }()
	t.Cleanup(func() { cancel(); <-done })
	var info *xapisim.ServeInfo
	for i := 0; i < 500 && info == nil; i++ {
		time.Sleep(10 * time.Millisecond)
		info, _ = xapisim.ReadServeInfo(sim.Dir)
	}
	if info == nil {
		t.Fatal("the simulator did not serve")
	}
	pw := filepath.Join(dir, "pool.pw")
	if err := os.WriteFile(pw, []byte(poolPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &xenSim{sim: sim, args: []string{"--xen", info.URL, "--vm", "web", "--xen-password-file", pw, "--xen-fingerprint", info.Fingerprint}}
}

// night writes a few blocks of the disk, backs the VM up, and returns
// its disk's summary and snapshot.
func (x *xenSim) night(t *testing.T, conf string, n uint64) (xenDiskJSON, string) {
	t.Helper()
	if err := x.sim.WriteBlocks(xapisim.DiskRef{VM: "web"}, []int64{int64(n), int64(20 + n)}, n); err != nil {
		t.Fatal(err)
	}
	r := runCoffer(t, append([]string{"--config", conf, "--json", "backup"}, x.args...)...)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	var sum struct {
		VMs []xenVMJSON `json:"vms"`
	}
	if r.code != 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &sum) != nil || len(sum.VMs) != 1 || !sum.VMs[0].OK {
		t.Fatalf("night %d: exit %d\n%s%s", n, r.code, r.stdout, r.stderr)
	}
	return sum.VMs[0].Disks[0], sum.VMs[0].SnapshotID
}

// A Xen VM's seed lost on the road: night 2 while it travels reads
// changed blocks; after coffer seed cancel, night 3 must not patch night
// 2 (whose receipt names the seed): it reads the disk in full, saying
// why, and restores byte-identical; night 4 reads changed blocks again.
func TestSeedCancelledXenNightReadsInFull(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	env := newSeedVaultEnv(t)
	_, tok, _, err := env.reg.CreateTenant(t.Context(), "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "coffer.yaml")
	if r := runCoffer(t, "--config", conf, "init", "--repo", env.ts.URL, "--token", tok.Reveal()); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	x := startXenSim(t, 6<<20)
	to := filepath.Join(t.TempDir(), "usb")
	if r := runCoffer(t, append([]string{"--config", conf, "seed", "export", "--to", to}, x.args...)...); r.code != 0 {
		t.Fatalf("seed export --xen: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	s, err := seed.Open(to)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := x.night(t, conf, 2); d.Read != manifest.XenReadChanged {
		t.Fatalf("night 2 while the seed travels read %s (%s)", d.Read, d.Reason)
	}
	if r := runCoffer(t, "--config", conf, "seed", "cancel", s.Manifest.ID, "--reason", "dropped"); r.code != 0 {
		t.Fatalf("seed cancel: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	d, snap := x.night(t, conf, 3)
	if d.Read != manifest.XenReadFull || !strings.HasPrefix(d.Reason, "the last snapshot's seed was cancelled (seed "+s.Manifest.ID[:12]) ||
		!strings.Contains(d.Reason, "(dropped)") {
		t.Fatalf("night 3 after the cancel read %s (%s), want the whole disk with the cancel as reason", d.Read, d.Reason)
	}
	want := filepath.Join(t.TempDir(), "want.img")
	if err := x.sim.Export(xapisim.DiskRef{VM: "web"}, want); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "restored.img")
	if r := runCoffer(t, "--config", conf, "--quiet", "restore", snap, "--to", out); r.code != 0 {
		t.Fatalf("restore of night 3: exit %d\n%s", r.code, r.stderr)
	}
	a, _ := os.ReadFile(want)
	b, _ := os.ReadFile(out)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("night 3 restored differs from the disk (%d and %d bytes)", len(b), len(a))
	}
	if d, _ := x.night(t, conf, 4); d.Read != manifest.XenReadChanged {
		t.Fatalf("night 4 read %s (%s): the night after the full read patches it", d.Read, d.Reason)
	}
}
