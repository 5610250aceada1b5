package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
	"github.com/cofferhq/coffer/vault"
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// seedVaultEnv is the real vault over a Local store, with what an import
// needs beside it.
type seedVaultEnv struct {
	reg  *registry.Registry
	led  *ledger.Ledger
	data store.Store
	ts   *httptest.Server
}

func newSeedVaultEnv(t *testing.T) *seedVaultEnv {
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
	return &seedVaultEnv{reg: reg, led: led, data: data, ts: ts}
}

// The seed's whole flow through the real vault: init registers the
// signing key; the export registers the seed and sends its small objects,
// never a pack; a night while it travels is accepted with receipts naming
// it, and its restore fails at once naming the seed; after the import
// (vault/jobs) status says to confirm, confirm is accepted, and both
// nights restore byte-identical.
func TestSeedThroughRealVault(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	ctx := t.Context()
	env := newSeedVaultEnv(t)
	ten, tok, _, err := env.reg.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "coffer.yaml")
	if r := runCoffer(t, "--config", conf, "init", "--repo", env.ts.URL, "--token", tok.Reveal()); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	if ten, err = env.reg.Tenant(ctx, ten.ID); err != nil || ten.SigningKey == "" {
		t.Fatalf("init did not register the signing key with the vault (%v)", err)
	}
	img := filepath.Join(dir, "web.img")
	night1 := make([]byte, 5<<20)
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range night1 {
		night1[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(img, night1, 0o600); err != nil {
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
	if err := s.Verify(ten.SigningKey); err != nil {
		t.Fatalf("the seed does not verify with the key the vault holds: %v", err)
	}
	tenantStore, err := store.ReadOnlySub(env.data, "repos/"+ten.ID+"/")
	if err != nil {
		t.Fatal(err)
	}
	packs, sent := 0, 0
	for _, f := range s.Manifest.Objects {
		_, err := tenantStore.Stat(ctx, f.Name)
		isPack := strings.HasPrefix(f.Name, repo.DataPrefix)
		if isPack {
			packs++
			if err == nil {
				sent++
			}
		} else if err != nil {
			t.Errorf("%s is not in the vault: %v (index files, receipts and snapshots are sent)", f.Name, err)
		}
	}
	if sent == 0 || sent == packs {
		t.Errorf("%d of the seed's %d packs are in the vault; want its metadata packs only", sent, packs)
	}
	night2 := bytes.Clone(night1)
	night2[0] ^= 1
	night2[3<<20] ^= 1
	realVaultNight(t, conf, img, night2, s, tenantStore)
	realVaultImport(t, env, ten, to, conf, s)
	for i, want := range [][]byte{night1, night2} {
		id := "latest"
		if i == 0 {
			id = s.Manifest.Snapshots[0]
		}
		out := filepath.Join(dir, "restored.img")
		_ = os.Remove(out)
		if r := runCoffer(t, "--config", conf, "--quiet", "restore", id, "--name", "web.img", "--to", out); r.code != 0 {
			t.Fatalf("restore of night %d after the import: exit %d\n%s", i+1, r.code, r.stderr)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
			t.Fatalf("night %d restored differs", i+1)
		}
	}
}

// realVaultNight backs up night 2 while the seed travels: the vault takes
// it, its receipt names the seed, and its restore fails at once naming it.
func realVaultNight(t *testing.T, conf, img string, data []byte, s *seed.Seed, tenantStore store.Store) {
	t.Helper()
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCoffer(t, "--config", conf, "--quiet", "backup", "--image", img); r.code != 0 {
		t.Fatalf("a night while the seed travels: exit %d\n%s", r.code, r.stderr)
	}
	rcs, err := repo.Receipts(t.Context(), tenantStore, nil)
	if err != nil || len(rcs) != 2 || rcs[0].Seed != s.Manifest.ID || rcs[1].Seed != s.Manifest.ID {
		t.Fatalf("receipts %v, %v; want two naming seed %s", rcs, err, s.Manifest.ID[:12])
	}
	out := filepath.Join(t.TempDir(), "early.img")
	r := runCoffer(t, "--config", conf, "restore", "latest", "--name", "web.img", "--to", out)
	if r.code == 0 || !strings.Contains(r.stderr, s.Manifest.ID[:12]) {
		t.Fatalf("a restore while the seed travels: exit %d\n%s", r.code, r.stderr)
	}
	r = runCoffer(t, "--config", conf, "--json", "seed", "status")
	var st struct {
		Seeds []seedStatusJSON `json:"seeds"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || len(st.Seeds) != 1 || st.Seeds[0].State != vaultapi.SeedTravelling ||
		!strings.Contains(st.Seeds[0].Advice, "keep the source until the import report is clean") {
		t.Fatalf("seed status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// realVaultImport imports the seed as cofferd seed import does, then
// status says to confirm and confirm is accepted.
func realVaultImport(t *testing.T, env *seedVaultEnv, ten *registry.Tenant, to, conf string, s *seed.Seed) {
	t.Helper()
	sw, _ := store.As[store.Swapper](env.data)
	rep, err := jobs.ImportSeed(t.Context(), jobs.ImportOptions{Data: env.data, Meta: env.data, Swap: sw, Ledger: env.led, Tenant: ten,
		Dir: to, WorkDir: t.TempDir(), Clock: clock.Real})
	if err != nil || !rep.Clean {
		t.Fatalf("import: %+v %v", rep, err)
	}
	r := runCoffer(t, "--config", conf, "seed", "status")
	if r.code != 0 || !strings.Contains(r.stdout, "coffer seed confirm "+s.Manifest.ID[:12]) {
		t.Fatalf("seed status after the import: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = runCoffer(t, "--config", conf, "seed", "confirm", s.Manifest.ID); r.code != 0 || !strings.Contains(r.stdout, "confirmed seed") {
		t.Fatalf("confirm: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
