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
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// The seed's flow through a vault (testVault and its model of the seed
// routes): the export registers the seed and sends its index files,
// receipts and snapshots, never a pack; a rerun sends nothing again; a
// night while it travels names it in the receipt of a snapshot that needs
// its packs (the manifest fetched once, then kept), and a snapshot that
// shares none names no seed; status says to keep the source, confirm is
// refused until the report is clean and then accepted.
func TestSeedThroughVault(t *testing.T) {
	v, conf, img, data := seedVaultAgent(t)
	s := exportThroughVault(t, v, conf, img)
	nightsWhileTravelling(t, v, conf, img, data, s)
	statusAndConfirm(t, v, conf, s)
}

// seedVaultAgent enrolls an agent with a test vault and writes a 6 MiB
// image; it returns the vault, the agent's config, the image and its bytes.
func seedVaultAgent(t *testing.T) (*testVault, string, string, []byte) {
	t.Helper()
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	v, srv := newTestVault(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "coffer.yaml")
	v.configPath = conf
	if r := runCoffer(t, "--config", conf, "init", "--repo", srv.URL, "--token", v.token()); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	img := filepath.Join(dir, "web.img")
	rng := rand.New(rand.NewPCG(5, 6))
	data := make([]byte, 6<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return v, conf, img, data
}

// exportThroughVault exports img and checks what reached the vault.
func exportThroughVault(t *testing.T, v *testVault, conf, img string) *seed.Seed {
	t.Helper()
	dir := filepath.Dir(conf)
	to := filepath.Join(dir, "usb")
	r := runCoffer(t, "--config", conf, "--json", "seed", "export", "--to", to, "--image", img)
	var out seedExportJSON
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil {
		t.Fatalf("seed export: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	s, err := seed.Open(to)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Registered || out.Vault == nil || out.Vault.ID != s.Manifest.ID || v.seeds.seeds[s.Manifest.ID] == nil {
		t.Fatalf("the seed was not registered: %+v", out)
	}
	small, packs, sentPacks := 0, 0, 0
	for _, f := range s.Manifest.Objects {
		_, err := v.st.Stat(t.Context(), f.Name)
		isPack := strings.HasPrefix(f.Name, repo.DataPrefix)
		switch {
		case isPack && err == nil:
			sentPacks++
			small++
		case !isPack && err != nil:
			t.Errorf("%s is not in the vault: %v (index files, receipts and snapshots are sent)", f.Name, err)
		case !isPack:
			small++
		}
		if isPack {
			packs++
		}
	}
	// Metadata packs (the disk's maps) are sent, data packs stay on the seed.
	if out.Sent == nil || out.Sent.Sent != small || out.Sent.MetaPacks != sentPacks || sentPacks == 0 || sentPacks == packs {
		t.Fatalf("sent %+v with %d of %d packs in the vault; want %d objects, the metadata packs only", out.Sent, sentPacks, packs, small)
	}
	r = runCoffer(t, "--config", conf, "--json", "seed", "export", "--to", to, "--image", img)
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Sent.Sent != 0 || out.Sent.Present != small || !out.Resumed {
		t.Fatalf("export again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A second seed while this one travels is refused before any work.
	to2 := filepath.Join(dir, "usb2")
	r = runCoffer(t, "--config", conf, "seed", "export", "--to", to2, "--image", img)
	if r.code != 1 || !strings.Contains(r.stderr, "still in transit") || !strings.Contains(r.stderr, s.Manifest.ID[:12]) {
		t.Fatalf("a second export while the first travels: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(to2, seed.RootDir, seed.ObjectsDir, "data")); err == nil {
		t.Fatal("the refused export wrote packs")
	}
	return s
}

// nightsWhileTravelling backs up a changed img, which shares packs with
// the seed, and another image, which shares none.
func nightsWhileTravelling(t *testing.T, v *testVault, conf, img string, data []byte, s *seed.Seed) {
	t.Helper()
	dir := filepath.Dir(conf)
	data[100] ^= 1
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "db.img")
	if err := os.WriteFile(other, []byte(strings.Repeat("other disk ", 50_000)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, im := range []string{img, other} {
		if r := runCoffer(t, "--config", conf, "--quiet", "backup", "--image", im); r.code != 0 {
			t.Fatalf("backup of %s while the seed travels: exit %d\n%s", im, r.code, r.stderr)
		}
	}
	rcs, err := repo.Receipts(t.Context(), v.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]string{}
	for _, rc := range rcs {
		if rc.Name == "web.img" && rc.Seed != s.Manifest.ID {
			t.Errorf("receipt of %s (%s) names seed %q; want %s", rc.Name, rc.Snapshot[:12], rc.Seed, s.Manifest.ID[:12])
		}
		named[rc.Name] = rc.Seed
	}
	if len(rcs) != 3 || named["db.img"] != "" {
		t.Fatalf("%d receipts, db.img names seed %q; want 3, none", len(rcs), named["db.img"])
	}
	if v.seeds.manifestGets != 1 {
		t.Fatalf("the manifest was fetched %d times over two nights; want once, then kept", v.seeds.manifestGets)
	}
}

// statusAndConfirm: status says to keep the source until the report is
// clean, then to confirm; confirm is refused, then accepted.
func statusAndConfirm(t *testing.T, v *testVault, conf string, s *seed.Seed) {
	t.Helper()
	r := runCoffer(t, "--config", conf, "seed", "status")
	if r.code != 0 || !strings.Contains(r.stdout, "keep the source until the import report is clean") || !strings.Contains(r.stdout, s.Manifest.ID) {
		t.Fatalf("seed status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCoffer(t, "--config", conf, "seed", "confirm", s.Manifest.ID[:10])
	if r.code != 1 || !strings.Contains(r.stderr, "keep the source") {
		t.Fatalf("confirm before the import: exit %d\n%s", r.code, r.stderr)
	}
	v.seeds.mu.Lock()
	si := v.seeds.seeds[s.Manifest.ID]
	si.State, si.Report = vaultapi.SeedImported, &vaultapi.SeedReport{Seed: si.ID, Objects: si.Objects, Uploaded: si.Objects, Clean: true}
	v.seeds.mu.Unlock()
	r = runCoffer(t, "--config", conf, "seed", "status")
	if r.code != 0 || !strings.Contains(r.stdout, "coffer seed confirm "+s.Manifest.ID[:12]) {
		t.Fatalf("seed status after a clean import: exit %d\n%s", r.code, r.stdout)
	}
	r = runCoffer(t, "--config", conf, "--json", "seed", "confirm", s.Manifest.ID[:10])
	if r.code != 0 || !strings.Contains(r.stdout, `"confirmed"`) {
		t.Fatalf("confirm: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = runCoffer(t, "--config", conf, "seed", "confirm", "xyz"); r.code != 2 {
		t.Fatalf("confirm of a malformed ID: exit %d\n%s", r.code, r.stderr)
	}
}
