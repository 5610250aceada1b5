package main

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// The seed's flow through the real vault: init registers the signing key,
// the export registers the seed and sends its small objects, a night while
// it travels is accepted with receipts naming it, and status shows it
// travelling. It needs the vault's seed routes (vault/, built beside this
// agent side) and says so when they are missing.
func TestSeedThroughRealVault(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	ctx := t.Context()
	reg, data, ts := realVault(t)
	ten, tok, _, err := reg.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "coffer.yaml")
	if r := runCoffer(t, "--config", conf, "init", "--repo", ts.URL, "--token", tok.Reveal()); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	got, err := reg.Tenant(ctx, ten.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.SigningKey == "" {
		if os.Getenv("COFFER_REQUIRE_SEED_ROUTES") == "" {
			t.Skip("the vault has no seed routes yet (POST /v1/signing-key); set COFFER_REQUIRE_SEED_ROUTES=1 to fail instead")
		}
		t.Fatal("init did not register the signing key with the real vault")
	}
	img := filepath.Join(dir, "web.img")
	rng := rand.New(rand.NewPCG(9, 9))
	buf := make([]byte, 5<<20)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(img, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(dir, "usb")
	if r := runCoffer(t, "--config", conf, "seed", "export", "--to", to, "--image", img); r.code != 0 {
		t.Fatalf("seed export: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	s, err := seed.Open(to)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(got.SigningKey); err != nil {
		t.Fatalf("the seed does not verify with the key the vault holds: %v", err)
	}
	tenantStore, err := store.ReadOnlySub(data, "repos/"+ten.ID+"/")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range s.Manifest.Objects {
		_, err := tenantStore.Stat(ctx, f.Name)
		if strings.HasPrefix(f.Name, repo.DataPrefix) == (err == nil) {
			t.Errorf("%s in the vault: %v (packs stay on the seed, the rest is sent)", f.Name, err)
		}
	}
	buf[0] ^= 1
	if err := os.WriteFile(img, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCoffer(t, "--config", conf, "--quiet", "backup", "--image", img); r.code != 0 {
		t.Fatalf("a night while the seed travels: exit %d\n%s", r.code, r.stderr)
	}
	rcs, err := repo.Receipts(ctx, tenantStore, nil)
	if err != nil || len(rcs) != 2 || rcs[0].Seed != s.Manifest.ID || rcs[1].Seed != s.Manifest.ID {
		t.Fatalf("receipts %v, %v; want two naming seed %s", rcs, err, s.Manifest.ID[:12])
	}
	r := runCoffer(t, "--config", conf, "--json", "seed", "status")
	var st struct {
		Seeds []seedStatusJSON `json:"seeds"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || len(st.Seeds) != 1 || st.Seeds[0].State != vaultapi.SeedTravelling {
		t.Fatalf("seed status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
