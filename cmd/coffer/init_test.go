package main

import (
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cofferhq/coffer/internal/vaultclient"
)

// readConfig reads an agent config file.
func readConfig(t *testing.T, path string) agentConfig {
	t.Helper()
	var c agentConfig
	b, err := os.ReadFile(path)
	if err == nil {
		err = yaml.Unmarshal(b, &c)
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// init saves a relative repository directory and vault CA as absolute
// paths, so that commands run from another directory (cron, systemd) find
// them; a later command from elsewhere opens the repository.
func TestInitSavesAbsolutePaths(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv("COFFER_VAULT_CA", "")
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.WriteFile("ca.pem", []byte("not used by a file repository"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "coffer.yaml")
	if r := runCoffer(t, "--config", conf, "--vault-ca", "ca.pem", "init", "--repo", "sub/repo"); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	c := readConfig(t, conf)
	if want := filepath.Join(dir, "sub", "repo"); c.Repository != want {
		t.Fatalf("config repository %q, want %q", c.Repository, want)
	}
	t.Chdir(t.TempDir())
	if r := runCoffer(t, "--config", conf, "snapshots"); r.code != 0 {
		t.Fatalf("snapshots from another directory: exit %d\n%s", r.code, r.stderr)
	}
}

// A relative --vault-ca is saved absolute: later commands from another
// directory still trust the vault.
func TestInitSavesAbsoluteVaultCA(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv("COFFER_VAULT_CA", "")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	v, _ := newTestVault(t)
	srv := httptest.NewTLSServer(v)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	t.Chdir(dir)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile("vault-ca.pem", pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "coffer.yaml")
	v.configPath = conf
	r := runCoffer(t, "--config", conf, "--vault-ca", "vault-ca.pem", "init", "--repo", srv.URL, "--token", v.token())
	if r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	if c := readConfig(t, conf); c.VaultCA != filepath.Join(dir, "vault-ca.pem") {
		t.Fatalf("config vault_ca %q, want the absolute path", c.VaultCA)
	}
	t.Chdir(t.TempDir())
	if r := runCoffer(t, "--config", conf, "snapshots"); r.code != 0 {
		t.Fatalf("snapshots from another directory: exit %d\n%s", r.code, r.stderr)
	}
}
