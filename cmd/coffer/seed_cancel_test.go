package main

import (
	"bytes"
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
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/registry"
)

// lostSeedEnv is an agent enrolled with the real vault, an image, and a
// seed of its night 1 in transit.
type lostSeedEnv struct {
	env         *seedVaultEnv
	ten         *registry.Tenant
	conf, img   string
	to          string // the seed's directory
	seed        *seed.Seed
	tenantStore store.Store
}

func newLostSeedEnv(t *testing.T, night1 []byte) *lostSeedEnv {
	t.Helper()
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	ctx := t.Context()
	e := &lostSeedEnv{env: newSeedVaultEnv(t)}
	ten, tok, _, err := e.env.reg.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e.conf, e.img = filepath.Join(dir, "coffer.yaml"), filepath.Join(dir, "web.img")
	if r := runCoffer(t, "--config", e.conf, "init", "--repo", e.env.ts.URL, "--token", tok.Reveal()); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	if e.ten, err = e.env.reg.Tenant(ctx, ten.ID); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.img, night1, 0o600); err != nil {
		t.Fatal(err)
	}
	e.to = filepath.Join(dir, "usb")
	if r := runCoffer(t, "--config", e.conf, "seed", "export", "--to", e.to, "--image", e.img); r.code != 0 {
		t.Fatalf("seed export: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if e.seed, err = seed.Open(e.to); err != nil {
		t.Fatal(err)
	}
	if e.tenantStore, err = store.ReadOnlySub(e.env.data, "repos/"+ten.ID+"/"); err != nil {
		t.Fatal(err)
	}
	return e
}

// night backs the image up with data; it returns the bytes the vault's
// packs grew by.
func (e *lostSeedEnv) night(t *testing.T, data []byte) int64 {
	t.Helper()
	if err := os.WriteFile(e.img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	before := e.packBytes(t)
	if r := runCoffer(t, "--config", e.conf, "--quiet", "backup", "--image", e.img); r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	return e.packBytes(t) - before
}

func (e *lostSeedEnv) packBytes(t *testing.T) int64 {
	t.Helper()
	var n int64
	if err := e.tenantStore.List(t.Context(), repo.DataPrefix, func(i store.Info) error { n += i.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// restore restores the image's snapshot id and compares it with want.
func (e *lostSeedEnv) restore(t *testing.T, id string, want []byte) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "restored.img")
	if r := runCoffer(t, "--config", e.conf, "--quiet", "restore", id, "--name", "web.img", "--to", out); r.code != 0 {
		t.Fatalf("restore %s: exit %d\n%s", id, r.code, r.stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Fatalf("restore %s: the bytes differ", id)
	}
}

func randomImage(seed uint64, size int) []byte {
	b := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// A seed lost on the road: night 2 runs while it travels; the tenant
// cancels it (coffer seed cancel); night 3 uploads again what the seed
// held, names no seed, and restores byte-identical; night 4 is a normal
// night again; the vault counts nights 1 and 2 as lost and refuses them.
func TestSeedCancelledNightsRecover(t *testing.T) {
	night1 := randomImage(11, 5<<20)
	e := newLostSeedEnv(t, night1)
	id := e.seed.Manifest.ID
	var seedPacks int64
	for _, f := range e.seed.Manifest.Objects {
		if strings.HasPrefix(f.Name, repo.DataPrefix) {
			if _, err := e.tenantStore.Stat(t.Context(), f.Name); err != nil {
				seedPacks += f.Size
			}
		}
	}
	night2 := bytes.Clone(night1)
	night2[1<<20] ^= 1
	if n := e.night(t, night2); n > 1<<20 {
		t.Fatalf("night 2 while the seed travels stored %d bytes", n)
	}

	r := runCoffer(t, "--config", e.conf, "seed", "cancel", id[:10], "--reason", "lost in the mail")
	if r.code != 0 || !strings.Contains(r.stdout, "lost in the mail") {
		t.Fatalf("seed cancel: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCoffer(t, "--config", e.conf, "--json", "seed", "status")
	var st struct {
		Seeds []seedStatusJSON `json:"seeds"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || len(st.Seeds) != 1 || st.Seeds[0].State != vaultapi.SeedCancelled ||
		st.Seeds[0].Reason != "lost in the mail" || !strings.Contains(st.Seeds[0].Advice, "uploaded again") {
		t.Fatalf("seed status after the cancel: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = runCoffer(t, "--config", e.conf, "seed", "export", "--to", e.to, "--image", e.img)
	if r.code == 0 || !strings.Contains(r.stderr, "will never be imported; export a new seed into an empty directory") {
		t.Errorf("resuming the export of the cancelled seed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runCoffer(t, "--config", e.conf, "drill"); r.code == 0 || !strings.Contains(r.stderr, "needed a cancelled seed") {
		t.Errorf("a drill with only lost snapshots: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	night3 := bytes.Clone(night2)
	night3[3<<20] ^= 1
	if n := e.night(t, night3); n < seedPacks*9/10 {
		t.Fatalf("night 3 stored %d bytes; the lost seed held %d bytes of packs the vault lacks", n, seedPacks)
	}
	kept := filepath.Join(os.Getenv("XDG_CACHE_HOME"), "coffer", "cache", e.seedRepoID(t), "seeds", id+".lost")
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("the lost list is not kept: %v", err)
	}
	rcs, err := repo.Receipts(t.Context(), e.tenantStore, nil)
	if err != nil || len(rcs) != 3 {
		t.Fatalf("receipts: %d, %v", len(rcs), err)
	}
	var latest *vaultapi.Receipt
	for _, rc := range rcs {
		if latest == nil || rc.Time.After(latest.Time) {
			latest = rc
		}
	}
	if latest.Seed != "" {
		t.Fatalf("night 3's receipt names seed %s", latest.Seed)
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(kept), id+".snapshots"))
	for _, rc := range rcs {
		if err != nil || rc.Seed == id && !strings.Contains(string(b), rc.Snapshot) {
			t.Errorf("the snapshots of the lost seed are not kept (the drill found them): %v %s", err, b)
		}
	}
	e.restore(t, "latest", night3)

	night4 := bytes.Clone(night3)
	night4[4<<20] ^= 1
	if n := e.night(t, night4); n > 1<<20 {
		t.Fatalf("night 4 stored %d bytes: the nights after the first are normal", n)
	}
	e.restore(t, "latest", night4)
	if r := runCoffer(t, "--config", e.conf, "--json", "drill"); r.code != 0 || !strings.Contains(r.stdout, `"passed":1`) {
		t.Errorf("a drill after the recovery: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	for _, rc := range rcs {
		if rc.Seed != id {
			continue
		}
		r := runCoffer(t, "--config", e.conf, "restore", rc.Snapshot, "--to", filepath.Join(t.TempDir(), "lost.img"))
		want := "snapshot " + rc.Snapshot[:12] + " needed seed " + id[:12] + ", which was cancelled on "
		if r.code == 0 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "(lost in the mail): it cannot be restored") {
			t.Errorf("restore of a snapshot of the lost seed: exit %d\n%s", r.code, r.stderr)
		}
	}
	sw, _ := store.As[store.Swapper](e.env.data)
	for _, rc := range rcs {
		err := jobs.SnapshotWait(t.Context(), sw, e.env.data, e.ten.ID, rc.Snapshot)
		if rc.Seed == id && (err == nil || !strings.Contains(err.Error(), "cancelled on")) {
			t.Errorf("the vault's answer for snapshot %s of the lost seed: %v", rc.Snapshot[:12], err)
		}
		if rc.Seed == "" && err != nil {
			t.Errorf("night 3: %v", err)
		}
	}
}

func (e *lostSeedEnv) seedRepoID(t *testing.T) string {
	t.Helper()
	return e.seed.Manifest.Repository
}
