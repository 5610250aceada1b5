package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/seedtest"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/registry"
)

// A snapshot whose receipt names a seed in transit is refused at once by
// cofferd restore (naming the seed) and skipped by a drill, saying why;
// once the seed is imported both run.
func TestRestoreRefusesWaitingSnapshot(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	idFile, data, reg, ten, key := escrowSeedTenant(t, dir, 5)
	defer data.Close()
	// The seed holds a made-up pack and one of the repository's own, which
	// is taken out of the store while the seed travels.
	packs, _ := filepath.Glob(filepath.Join(dir, "repos", ten.ID, "data", "*", "*"))
	if len(packs) == 0 {
		t.Fatal("no pack in the tenant's space")
	}
	// The largest: a pack of disk data (the maps' pack is sent over the
	// WAN when a seed is registered).
	onSeed := packs[0]
	for _, p := range packs {
		if a, b := fileSize(t, p), fileSize(t, onSeed); a > b {
			onSeed = p
		}
	}
	sd := seedtest.New(t, key, ten.ID, strings.Repeat("e", 64), filepath.Base(onSeed))
	if _, err := jobs.RegisterSeed(ctx, reg.Swapper(), data, ten, sd.Body, sd.Sig, time.Now()); err != nil {
		t.Fatal(err)
	}
	// The snapshot's receipt, again, naming the seed (as a night's backup
	// while the seed travels writes it).
	sub, _ := store.ReadOnlySub(data, "repos/"+ten.ID+"/")
	rcs, err := repo.Receipts(ctx, sub, nil)
	if err != nil || len(rcs) != 1 {
		t.Fatalf("receipts: %d %v", len(rcs), err)
	}
	rc := rcs[0]
	old, err := rc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	oldSum := sha256.Sum256(old)
	if err := data.Delete(ctx, "repos/"+ten.ID+"/receipts/"+hex.EncodeToString(oldSum[:])); err != nil {
		t.Fatal(err)
	}
	rc.Seed = sd.Manifest.ID
	b, err := rc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if err := data.Put(ctx, "repos/"+ten.ID+"/receipts/"+hex.EncodeToString(sum[:]), store.Bytes(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "web01.img")
	r := cofferd(t, dir, "restore", "--tenant", "acme", "latest", "--name", "web01", "--to", out, "--escrow-key", idFile)
	if r.code == 0 || !strings.Contains(r.stderr, "waits on seed "+sd.Manifest.ID[:12]+" (exported 2026-12-01 from agent-1)") ||
		!strings.Contains(r.stderr, "cofferd seed import") {
		t.Fatalf("restore of a waiting snapshot: %+v", r)
	}
	r = cofferd(t, dir, "--json", "drill", "--tenant", "acme", "--escrow-key", idFile)
	var d drillOut
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || len(d.Drills) != 0 || len(d.Skipped) != 1 ||
		d.Skipped[0].VM != "web01" || !strings.Contains(d.Skipped[0].Reason, "waits on seed") {
		t.Fatalf("drill of a waiting snapshot: %+v %+v", r, d)
	}

	// The full check with the escrow identity: the pack on the seed is a
	// warning naming it, not damage.
	aside := filepath.Join(t.TempDir(), "pack")
	if err := os.Rename(onSeed, aside); err != nil {
		t.Fatal(err)
	}
	r = cofferd(t, dir, "--json", "check", "--tenant", "acme", "--escrow-key", idFile)
	if r.code != 0 || !strings.Contains(r.stdout, "travels on seed "+sd.Manifest.ID[:12]) {
		t.Fatalf("full check while a pack travels on the seed: %+v", r)
	}
	if err := os.Rename(aside, onSeed); err != nil {
		t.Fatal(err)
	}

	if _, err := jobs.MarkSeedImported(ctx, reg.Swapper(), ten.ID, sd.Manifest.ID, &vaultapi.SeedReport{Clean: true}); err != nil {
		t.Fatal(err)
	}
	if r := cofferd(t, dir, "restore", "--tenant", "acme", "latest", "--name", "web01", "--to", out, "--escrow-key", idFile); r.code != 0 {
		t.Fatalf("restore after the import: %+v", r)
	}
	r = cofferd(t, dir, "--json", "drill", "--tenant", "acme", "--escrow-key", idFile)
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil || d.Passed != 1 || len(d.Skipped) != 0 {
		t.Fatalf("drill after the import: %+v %+v", r, d)
	}
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// escrowSeedTenant makes tenant acme with escrow, backs up a 2 MiB image
// of diskgen seed n into it, gives it a new signing key and opens the
// vault's state (the caller closes data); it returns the escrow identity
// file too.
func escrowSeedTenant(t *testing.T, dir string, n uint64) (string, store.Store, *registry.Registry, *registry.Tenant, *crypto.SigningKey) {
	t.Helper()
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := diskgen.Generate(img, 2<<20, n, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	idFile := escrowTenant(t, dir, "acme", true, img)
	g := &globals{storeURL: "file://" + dir, clock: clock.Real}
	data, reg, _, err := g.openState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ten, err := reg.Resolve(ctx, "acme")
	key := seedtest.Key(t)
	if err == nil {
		ten, err = reg.SetSigningKey(ctx, ten.ID, key.Public())
	}
	if err != nil {
		data.Close()
		t.Fatal(err)
	}
	return idFile, data, reg, ten, key
}
