package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeImage writes a small disk image of n bytes of pattern and returns
// its path.
func writeImage(t *testing.T, dir, name string, n int, pattern string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	data := bytes.Repeat([]byte(pattern), n/len(pattern)+1)[:n]
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// lastJSON decodes the last line of a --json command's output.
func lastJSON(t *testing.T, out string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil {
		t.Fatalf("not JSON: %q", out)
	}
	return m
}

// restore latest without --name is refused (exit 2, the names listed,
// nothing written) when snapshots of several names exist; every summary
// names the snapshot ID, name and time restored.
func TestRestoreLatestNeedsName(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	dir := t.TempDir()
	conf := filepath.Join(dir, "coffer.yaml")
	if r := runCoffer(t, "--config", conf, "init", "--repo", filepath.Join(dir, "repo")); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	web := writeImage(t, dir, "web.img", 300<<10, "web01 ")
	db := writeImage(t, dir, "db.img", 200<<10, "db01 ")
	if r := runCoffer(t, "--config", conf, "--quiet", "backup", "--image", web, "--name", "web01"); r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	// One name: latest alone is unambiguous.
	out := filepath.Join(dir, "one.img")
	if r := runCoffer(t, "--config", conf, "--quiet", "restore", "latest", "--to", out); r.code != 0 {
		t.Fatalf("restore latest of the only name: exit %d\n%s", r.code, r.stderr)
	}
	r := runCoffer(t, "--config", conf, "--json", "backup", "--image", db, "--name", "db01")
	if r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	dbID := lastJSON(t, r.stdout)["snapshot_id"].(string)

	out = filepath.Join(dir, "out.img")
	r = runCoffer(t, "--config", conf, "restore", "latest", "--to", out)
	if r.code != 2 || !strings.Contains(r.stderr, "db01, web01") || !strings.Contains(r.stderr, "--name") {
		t.Fatalf("restore latest with two names: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("a refused restore wrote %s (%v)", out, err)
	}

	r = runCoffer(t, "--config", conf, "--json", "restore", "latest", "--name", "web01", "--to", out)
	if r.code != 0 {
		t.Fatalf("restore --name web01: exit %d\n%s", r.code, r.stderr)
	}
	s := lastJSON(t, r.stdout)
	if s["type"] != "summary" || s["name"] != "web01" || s["snapshot_id"] == dbID || len(s["snapshot_id"].(string)) != 64 {
		t.Fatalf("summary %v", s)
	}
	if ts, err := time.Parse(time.RFC3339, s["time"].(string)); err != nil || time.Since(ts) > time.Hour {
		t.Fatalf("summary time %v (%v)", s["time"], err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, mustRead(t, web)) {
		t.Fatal("restored the wrong disk")
	}

	r = runCoffer(t, "--config", conf, "restore", dbID[:8], "--to", filepath.Join(dir, "db-out.img"))
	if r.code != 0 || !strings.Contains(r.stdout, dbID[:12]) || !strings.Contains(r.stdout, "db01") || !strings.Contains(r.stdout, "taken ") {
		t.Fatalf("restore by ID: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// restore --to a block device that holds data needs --overwrite-device
// (exit 1 and the flag named without it, the device unchanged); with it the
// device holds the disk.
func TestRestoreToDeviceFlag(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root for losetup")
		}
		t.Skip("needs root for losetup")
	}
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	dir := t.TempDir()
	conf := filepath.Join(dir, "coffer.yaml")
	if r := runCoffer(t, "--config", conf, "init", "--repo", filepath.Join(dir, "repo")); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	img := writeImage(t, dir, "vm.img", 1<<20, "vm disk ")
	if r := runCoffer(t, "--config", conf, "--quiet", "backup", "--image", img, "--name", "vm"); r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	backing := writeImage(t, dir, "backing.img", 2<<20, "old data ")
	out, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "--detach", dev).Run() })

	r := runCoffer(t, "--config", conf, "restore", "latest", "--to", dev)
	if r.code != 1 || !strings.Contains(r.stderr, "--overwrite-device") {
		t.Fatalf("restore onto a device with data: exit %d\n%s", r.code, r.stderr)
	}
	if got := mustRead(t, backing); !bytes.Equal(got, mustRead(t, writeImage(t, dir, "want.img", 2<<20, "old data "))) {
		t.Fatal("a refused restore changed the device")
	}
	r = runCoffer(t, "--config", conf, "restore", "latest", "--to", dev, "--overwrite-device")
	if r.code != 0 || !strings.Contains(r.stdout, "the rest zeroed") {
		t.Fatalf("restore --overwrite-device: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, 1<<20)
	if _, err := f.ReadAt(got, 0); err != nil || !bytes.Equal(got, mustRead(t, img)) {
		t.Fatalf("the device does not hold the disk (%v)", err)
	}
}
