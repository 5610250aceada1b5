package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
)

// coffer seed export of a simulated Xen VM: its snapshot (both disks) and
// every object it needs land in the seed, which verifies.
func TestSeedExportXen(t *testing.T) {
	repoDir, _ := seedTestRepo(t, 1)
	before := listFiles(t, repoDir)
	simDir := t.TempDir()
	const poolPassword = "pool password"
	sim, err := xapisim.Init(filepath.Join(simDir, "state"), poolPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int64{6 << 20, 2 << 20}
	if _, err := sim.CreateVM("web", sizes, true); err != nil {
		t.Fatal(err)
	}
	for n, size := range sizes {
		img := filepath.Join(simDir, "disk.img")
		if err := diskgen.Generate(img, size, uint64(n+3), diskgen.Options{}); err != nil {
			t.Fatal(err)
		}
		if err := sim.Import(xapisim.DiskRef{VM: "web", N: n}, img); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, xapisim.ServeConfig{Listen: "127.0.0.1:0", NBDListen: "127.0.0.1:0"}) }()
	defer func() { cancel(); <-done }()
	var info *xapisim.ServeInfo
	for i := 0; i < 500 && info == nil; i++ {
		time.Sleep(10 * time.Millisecond)
		info, _ = xapisim.ReadServeInfo(sim.Dir)
	}
	if info == nil {
		t.Fatal("the simulator did not serve")
	}
	pw := filepath.Join(t.TempDir(), "pool.pw")
	if err := os.WriteFile(pw, []byte(poolPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "usb")
	r := runCoffer(t, "--config", filepath.Join(t.TempDir(), "c.yaml"), "--repo", repoDir, "seed", "export", "--to", to,
		"--xen", info.URL, "--vm", "web", "--xen-password-file", pw, "--xen-fingerprint", info.Fingerprint)
	if r.code != 0 {
		t.Fatalf("seed export --xen: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	m := checkSeed(t, to, repoDir, before)
	if len(m.Snapshots) != 1 || len(m.Packs()) == 0 {
		t.Fatalf("the seed holds %d snapshots, %d packs; want the VM's one snapshot", len(m.Snapshots), len(m.Packs()))
	}
	if _, done, err := seed.BackedUp(seed.Root(to)); !done || err != nil {
		t.Fatalf("the export did not mark its backup done: %v", err)
	}
}
