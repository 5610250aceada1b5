package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// init registers the repository's public seed signing key with the vault,
// for a new repository and for an agent joining it (the same key again);
// a vault that does not take it leaves init successful with a warning
// that says how to send it again.
func TestInitRegistersSigningKey(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "correct horse")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	v, srv := newTestVault(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "a", "coffer.yaml")
	v.configPath = conf
	r := runCoffer(t, "--config", conf, "--json", "init", "--repo", srv.URL, "--token", v.token())
	if r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out["signing_key_registered"] != true {
		t.Fatalf("init --json: %s (%v); want signing_key_registered true", r.stdout, err)
	}
	rp, err := repo.Open(t.Context(), v.st, []byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	want := rp.Keys().SigningKey().Public()
	if got := v.seeds.signingKey(); got != want {
		t.Fatalf("the vault learned %q, want the repository's key %q", got, want)
	}

	conf2 := filepath.Join(dir, "b", "coffer.yaml")
	v.configPath = conf2
	r = runCoffer(t, "--config", conf2, "init", "--repo", srv.URL, "--token", v.token())
	if r.code != 0 || strings.Contains(r.stderr, "signing key") {
		t.Fatalf("joining: exit %d\n%s", r.code, r.stderr)
	}

	old, osrv := newTestVault(t)
	old.seeds.off = true
	conf3 := filepath.Join(dir, "c", "coffer.yaml")
	old.configPath = conf3
	r = runCoffer(t, "--config", conf3, "init", "--repo", osrv.URL, "--token", old.token())
	if r.code != 0 || !strings.Contains(r.stderr, "seed signing key") || !strings.Contains(r.stderr, "coffer seed status") {
		t.Fatalf("init with a vault without the route: exit %d\n%s", r.code, r.stderr)
	}
}
