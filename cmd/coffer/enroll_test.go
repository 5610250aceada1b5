package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// A second agent that joins a tenant with a mistyped passphrase (exit 12)
// keeps the credential the vault accepted, and the natural retry with the
// same token and the right passphrase joins without sending anything that
// the vault would refuse; a wrong new token then changes nothing: the
// working credential stays in the config and in use. End to end against
// the real vault server, in process.
func TestJoinRetryAfterWrongPassphrase(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	ctx := context.Background()
	reg, _, ts := realVault(t)
	ten, tok1, _, err := reg.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv("COFFER_PASSWORD", "tenant passphrase")
	if r := runCoffer(t, "--config", filepath.Join(dir, "a1.yaml"), "init", "--repo", ts.URL, "--token", tok1.Reveal()); r.code != 0 {
		t.Fatalf("first agent: exit %d\n%s", r.code, r.stderr)
	}
	tok2, _, err := reg.NewToken(ctx, ten.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "a2.yaml")
	t.Setenv("COFFER_PASSWORD", "tenant passphrase, mistyped")
	r := runCoffer(t, "--config", conf, "init", "--repo", ts.URL, "--token", tok2.Reveal())
	if r.code != 12 || !strings.Contains(r.stderr, "run coffer init again") || strings.Contains(r.stderr, tok2.Reveal()) {
		t.Fatalf("join with a wrong passphrase: exit %d\n%s", r.code, r.stderr)
	}
	accepted := readConfig(t, conf)
	if !accepted.Enrolled || accepted.Credential == "" || accepted.PendingCredential != "" {
		t.Fatalf("config after the failed join = %+v; want the accepted credential", accepted)
	}
	if _, _, err := reg.Authenticate(ctx, accepted.Credential.Reveal()); err != nil {
		t.Fatalf("the saved credential is not the vault's: %v", err)
	}

	t.Setenv("COFFER_PASSWORD", "tenant passphrase")
	r = runCoffer(t, "--config", conf, "init", "--repo", ts.URL, "--token", tok2.Reveal())
	if r.code != 0 || !strings.Contains(r.stdout, "joined the tenant's repository") {
		t.Fatalf("the retry: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if c := readConfig(t, conf); c.Credential != accepted.Credential || !c.Enrolled {
		t.Fatalf("the retry replaced the accepted credential: %+v", c)
	}
	creds, err := reg.Credentials(ctx, ten.ID)
	if err != nil || len(creds) != 2 {
		t.Fatalf("tenant has %d credentials (%v), want one per agent", len(creds), err)
	}
	if r := runCoffer(t, "--config", conf, "snapshots"); r.code != 0 {
		t.Fatalf("snapshots from the second agent: exit %d\n%s", r.code, r.stderr)
	}

	// A token the vault refuses (unknown, or mistyped) on an enrolled agent
	// changes nothing that a corrected retry would trip over.
	bad, _, _, _ := vaultapi.NewToken()
	r = runCoffer(t, "--config", conf, "init", "--repo", ts.URL, "--token", bad.Reveal())
	if r.code != 1 || strings.Contains(r.stderr, bad.Reveal()) {
		t.Fatalf("init with a refused token: exit %d\n%s", r.code, r.stderr)
	}
	if c := readConfig(t, conf); c.Credential != accepted.Credential || !c.Enrolled {
		t.Fatalf("a refused token replaced the working credential: %+v", c)
	}
	if r := runCoffer(t, "--config", conf, "snapshots"); r.code != 0 {
		t.Fatalf("snapshots after a refused token: exit %d\n%s", r.code, r.stderr)
	}
	// A wrong passphrase with a new token is caught before the token is
	// spent: the token still enrolls a third agent.
	tok3, _, err := reg.NewToken(ctx, ten.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("COFFER_PASSWORD", "wrong again")
	r = runCoffer(t, "--config", conf, "init", "--repo", ts.URL, "--token", tok3.Reveal())
	if r.code != 12 || !strings.Contains(r.stderr, "token was not used") {
		t.Fatalf("new token, wrong passphrase: exit %d\n%s", r.code, r.stderr)
	}
	t.Setenv("COFFER_PASSWORD", "tenant passphrase")
	if r := runCoffer(t, "--config", filepath.Join(dir, "a3.yaml"), "init", "--repo", ts.URL, "--token", tok3.Reveal()); r.code != 0 {
		t.Fatalf("the unspent token: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(conf); err != nil {
		t.Fatal(err)
	}
}
