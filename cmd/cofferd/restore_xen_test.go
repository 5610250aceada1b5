package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/xenapi"
	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/xenbackup"
)

// The provider recreates a tenant's VM in its own pool from the vault:
// the new VM's disks equal the ones backed up.
func TestRestoreVMIntoPool(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	dir, simDir := t.TempDir(), t.TempDir()
	const poolPassword = "pool password"
	sim, err := xapisim.Init(filepath.Join(simDir, "state"), poolPassword, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.CreateVM("web", []int64{12 << 20, 4 << 20}, true); err != nil {
		t.Fatal(err)
	}
	for n, size := range []int64{12 << 20, 4 << 20} {
		img := filepath.Join(simDir, "seed.img")
		if err := diskgen.Generate(img, size, uint64(n+7), diskgen.Options{}); err != nil {
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
	idFile := escrowTenantWith(t, dir, "acme", true, func(r *repo.Repo) {
		x, err := xenapi.Login(ctx, xenapi.Config{URL: info.URL, User: "root", Password: poolPassword, Fingerprint: info.Fingerprint})
		if err != nil {
			t.Fatal(err)
		}
		defer x.Logout(ctx)
		res, err := xenbackup.Run(ctx, xenbackup.Options{Xen: x, Repo: r, VMs: []string{"web"},
			Session: uploader.SessionOptions{Workers: 2, StateDir: filepath.Join(simDir, "runs")}})
		if err != nil || len(res.Failed()) != 0 {
			t.Fatalf("backup: %v %+v", err, res)
		}
	})
	pwFile := filepath.Join(t.TempDir(), "pool.pw")
	if err := os.WriteFile(pwFile, []byte(poolPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(info.URL, "https://")
	r := cofferd(t, dir, "--json", "restore", "--tenant", "acme", "latest", "--name", "web", "--escrow-key", idFile,
		"--to", "xapi://"+host+"/Local%20storage", "--xen-password-file", pwFile, "--xen-fingerprint", info.Fingerprint)
	var out poolRestoreOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.VMUUID == "" || len(out.VDIs) != 2 {
		t.Fatalf("restore into the pool: %+v", r)
	}
	for n := 0; n < 2; n++ {
		want, got := filepath.Join(simDir, "want.img"), filepath.Join(simDir, "got.img")
		if err := sim.Export(xapisim.DiskRef{VM: "web", N: n}, want); err != nil {
			t.Fatal(err)
		}
		if err := sim.Export(xapisim.DiskRef{VM: out.VMUUID, N: n}, got); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(want)
		b, _ := os.ReadFile(got)
		if len(a) == 0 || string(a) != string(b) {
			t.Fatalf("disk %d of the restored VM differs from the original", n)
		}
	}
	if r := cofferd(t, dir, "restore", "--tenant", "acme", "latest", "--escrow-key", idFile, "--to", "xapi://"+host+"/Local%20storage",
		"--xen-password-file", pwFile, "--xen-fingerprint", info.Fingerprint, "--format", "qcow2"); r.code != 2 {
		t.Fatalf("--format with --to xapi://: %+v", r)
	}
}
