package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
	"github.com/cofferhq/coffer/vault"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// realVault runs the real vault server over a Local store.
func realVault(t *testing.T) (*registry.Registry, store.Store, *httptest.Server) {
	t.Helper()
	data, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { data.Close() })
	reg, err := registry.New(data, clock.Real)
	if err != nil {
		t.Fatal(err)
	}
	led, err := ledger.New(data, data, clock.Real, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := vault.Config{Data: data}
	(&vault.State{Registry: reg, Ledger: led}).Configure(&cfg)
	srv, err := vault.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return reg, data, ts
}

func TestInitEscrowThroughRealVault(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "correct horse")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	ctx := context.Background()
	reg, data, ts := realVault(t)
	newTenant := func(name string) (*registry.Tenant, string) {
		ten, tok, _, err := reg.CreateTenant(ctx, name, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return ten, tok.Reveal()
	}

	// No escrow key yet: --escrow fails before anything is created.
	ten, tok := newTenant("acme")
	conf := filepath.Join(t.TempDir(), "coffer.yaml")
	r := runCoffer(t, "--config", conf, "init", "--repo", ts.URL, "--token", tok, "--escrow")
	if r.code != 2 || !strings.Contains(r.stderr, "offers no escrow key") || !strings.Contains(r.stderr, "nothing was created") {
		t.Fatalf("--escrow without a key: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := data.Stat(ctx, "repos/"+ten.ID+"/config"); err == nil {
		t.Fatal("a repository was created")
	}
	if got, _ := reg.Tenant(ctx, ten.ID); got.Escrow.Status != "" {
		t.Fatalf("escrow recorded: %+v", got.Escrow)
	}
	// --escrow with a file repository is a usage error.
	if r := runCoffer(t, "--config", filepath.Join(t.TempDir(), "c.yaml"), "init", "--repo", "file://"+t.TempDir(), "--escrow"); r.code != 2 {
		t.Fatalf("--escrow on a file repo: %+v", r)
	}

	kp, err := crypto.GenerateEscrowKey(false)
	if err != nil {
		t.Fatal(err)
	}
	key, err := reg.InitEscrow(ctx, kp.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	r = runCoffer(t, "--config", conf, "init", "--repo", ts.URL, "--token", tok, "--escrow")
	if r.code != 0 || !strings.Contains(r.stdout+r.stderr, key.Fingerprint) {
		t.Fatalf("init --escrow: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	got, err := reg.Tenant(ctx, ten.ID)
	if err != nil || got.Escrow.Status != vaultapi.EscrowYes || got.Escrow.Fingerprint != key.Fingerprint {
		t.Fatalf("tenant escrow %+v %v", got.Escrow, err)
	}
	// The recorded slot opens, with the offline identity, the very key that
	// authenticates the repository config.
	tenantStore, err := store.OpenLocal(filepath.Join(strings.TrimPrefix(data.Location(), "file://"), "repos", ten.ID), false)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := store.ReadAll(ctx, tenantStore, got.Escrow.Slot)
	if err != nil {
		t.Fatal(err)
	}
	slot, err := crypto.ParseSlot(raw, got.Escrow.Slot)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := crypto.ParseEscrowIdentities(strings.NewReader(kp.Identity()))
	if err != nil {
		t.Fatal(err)
	}
	mk, err := slot.OpenWithIdentity(ids...)
	if err != nil {
		t.Fatal(err)
	}
	_, body, mac, err := repo.ReadConfig(ctx, tenantStore)
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := crypto.Derive(mk)
	if !keys.CheckConfigMAC(body, mac) {
		t.Fatal("the escrow slot does not hold the repository's master key")
	}
	// The passphrase still opens the repository (the escrow slot is skipped).
	if _, err := repo.Open(ctx, tenantStore, []byte("correct horse")); err != nil {
		t.Fatal(err)
	}

	// Without --escrow nothing is sealed and the vault records "no".
	ten2, tok2 := newTenant("beta")
	conf2 := filepath.Join(t.TempDir(), "coffer.yaml")
	r = runCoffer(t, "--config", conf2, "--json", "init", "--repo", ts.URL, "--token", tok2)
	if r.code != 0 {
		t.Fatalf("init: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var out map[string]any
	if json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &out) == nil && out["escrow_slot"] != nil {
		t.Fatalf("escrow slot without --escrow: %s", r.stdout)
	}
	if got, _ := reg.Tenant(ctx, ten2.ID); got.Escrow.Status != vaultapi.EscrowNo {
		t.Fatalf("beta escrow %+v", got.Escrow)
	}
	slots, err := repo.ListSlots(ctx, mustLocal(t, data, ten2.ID))
	if err != nil || len(slots) != 1 || slots[0].Slot.Type != crypto.SlotPassphrase {
		t.Fatalf("beta slots %+v %v", slots, err)
	}
}

func mustLocal(t *testing.T, data store.Store, tenantID string) store.Store {
	t.Helper()
	s, err := store.OpenLocal(filepath.Join(strings.TrimPrefix(data.Location(), "file://"), "repos", tenantID), false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
