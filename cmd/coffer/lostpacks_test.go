package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// TestBackupLostPacksExitsNonZero: a backup whose packs the store keeps
// failing to take (every pack put fails, after the retry layer has tried
// them for the retry patience) exits non-zero and writes no snapshot;
// once the store takes them again the next backup succeeds.
func TestBackupLostPacksExitsNonZero(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	t.Setenv(EnvRetryPatience, "")
	v, srv := newTestVault(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "coffer.yaml")
	v.configPath = conf
	if r := runCoffer(t, "--config", conf, "init", "--repo", srv.URL, "--token", v.token()); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	img := filepath.Join(dir, "disk.img")
	data := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	local := v.st
	faulty := store.NewFaulty(local)
	faulty.Add(store.FaultRule{Op: "put", Prefix: "data/", Times: -1})
	v.st = faulty
	r := runCoffer(t, "--config", conf, "--quiet", "--retry-patience", "1s", "backup", "--image", img)
	if r.code == 0 {
		t.Fatalf("a backup whose packs all failed exited 0:\n%s%s", r.stdout, r.stderr)
	}
	if r.code != 1 || !strings.Contains(r.stderr, "giving up") || !strings.Contains(r.stderr, "put data/") {
		t.Errorf("backup with lost packs: exit %d, %s; want exit 1 saying which pack put gave up", r.code, r.stderr)
	}
	if faulty.Ops("put") < 2 {
		t.Errorf("%d pack puts reached the store; want the failed put retried", faulty.Ops("put"))
	}
	var snaps []string
	if err := local.List(t.Context(), "snapshots/", func(i store.Info) error { snaps = append(snaps, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 0 {
		t.Fatalf("the failed backup wrote snapshots %v", snaps)
	}
	v.st = local
	if r := runCoffer(t, "--config", conf, "--quiet", "backup", "--image", img); r.code != 0 {
		t.Fatalf("backup once the store works: exit %d\n%s", r.code, r.stderr)
	}
}
