package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/drill"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// coffer drill verifies the newest snapshot of each VM, stores plain JSON
// evidence under drills/ that parses without keys, and fails (exit 1) with
// evidence naming the damage when a pack was tampered with.
func TestDrillAgent(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	dir := t.TempDir()
	conf := filepath.Join(dir, "coffer.yaml")
	repoDir := filepath.Join(dir, "repo")
	if r := runCoffer(t, "--config", conf, "init", "--repo", repoDir); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	for _, vm := range []string{"web01", "db01"} {
		img := writeImage(t, dir, vm+".img", 300<<10, vm+" data ")
		if r := runCoffer(t, "--config", conf, "--quiet", "backup", "--image", img, "--name", vm); r.code != 0 {
			t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
		}
	}
	r := runCoffer(t, "--config", conf, "--json", "drill", "--rto", "1h")
	var out drillOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Passed != 2 || len(out.Stored) != 2 {
		t.Fatalf("drill: %+v", r)
	}
	for i, e := range out.Drills {
		if e.RunBy != drill.ByAgent || e.Target != drill.TargetVerifyOnly || e.RTO != drill.RTOMet || e.Tenant != "" {
			t.Fatalf("evidence %+v", e)
		}
		b, err := os.ReadFile(filepath.Join(repoDir, filepath.FromSlash(out.Stored[i])))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := drill.Parse(b); err != nil || got.SnapshotID != e.SnapshotID || drill.AgentName(b) != out.Stored[i] {
			t.Fatalf("stored evidence %s: %v", out.Stored[i], err)
		}
	}
	if r := runCoffer(t, "--config", conf, "drill", "--name", "nope"); r.code != 2 || !strings.Contains(r.stderr, "no snapshot named nope") {
		t.Fatalf("drill of a missing VM: %+v", r)
	}

	packs, _ := filepath.Glob(filepath.Join(repoDir, "data", "*", "*"))
	for _, p := range packs {
		b, _ := os.ReadFile(p)
		b[len(b)/3] ^= 4
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r = runCoffer(t, "--config", conf, "drill", "--name", "web01")
	if r.code != 1 || !strings.Contains(r.stdout, "failed") || !strings.Contains(r.stdout, "error:") || !strings.Contains(r.stderr, "1 of 1 drills failed") {
		t.Fatalf("tampered drill: %+v", r)
	}
	stored, _ := filepath.Glob(filepath.Join(repoDir, "drills", "*"))
	if len(stored) != 3 {
		t.Fatalf("evidence objects %v, want 3", stored)
	}
}

// Through a vault, coffer drill measures against the objective the vault
// holds for the tenant unless --rto says otherwise, and stores the evidence
// as a drills/ object the vault accepts.
func TestDrillThroughVault(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv(vaultclient.EnvCredential, "")
	v, srv := newTestVault(t)
	v.rto = 7200
	dir := t.TempDir()
	conf := filepath.Join(dir, "coffer.yaml")
	v.configPath = conf
	t.Setenv(EnvEnrollToken, v.token())
	if r := runCoffer(t, "--config", conf, "init", "--repo", srv.URL); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	t.Setenv(EnvEnrollToken, "")
	img := writeImage(t, dir, "web.img", 200<<10, "web01 ")
	if r := runCoffer(t, "--config", conf, "--quiet", "backup", "--image", img, "--name", "web01"); r.code != 0 {
		t.Fatalf("backup: %+v", r)
	}
	for _, c := range []struct {
		args      []string
		objective float64
	}{{nil, 7200}, {[]string{"--rto", "30m"}, 1800}} {
		r := runCoffer(t, append([]string{"--config", conf, "--json", "drill"}, c.args...)...)
		var out drillOut
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || len(out.Drills) != 1 {
			t.Fatalf("drill %v: %+v", c.args, r)
		}
		if e := out.Drills[0]; e.RTOObjectiveSeconds != c.objective || !e.Passed() {
			t.Fatalf("drill %v: %+v", c.args, e)
		}
		b, err := store.ReadAll(t.Context(), v.st, out.Stored[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := drill.Parse(b); err != nil {
			t.Fatal(err)
		}
	}
}
