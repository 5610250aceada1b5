package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/seedtest"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/jobs"
)

// cofferd seed cancel: a seed in transit turns cancelled with its reason
// and the count of its packs the vault lacks; list and show say so; its
// import is then refused naming the reason; a second cancel changes
// nothing.
func TestSeedCancelCommand(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if r := cofferd(t, dir, "tenant", "create", "acme"); r.code != 0 {
		t.Fatalf("tenant create: %+v", r)
	}
	mk, _ := crypto.NewMasterKey()
	keys, _ := crypto.Derive(mk)
	k := keys.SigningKey()
	g := &globals{storeURL: "file://" + dir, clock: clock.Real}
	st, err := g.openSeedState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tn, err := st.reg.Resolve(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if tn, err = st.reg.SetSigningKey(ctx, tn.ID, k.Public()); err != nil {
		t.Fatal(err)
	}
	seedDir, objects := exportSeed(t, k, tn.ID)
	s, err := seed.Open(seedDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.RegisterSeed(ctx, st.sw, st.data, tn, s.Body, s.Sig, clock.Real.Now()); err != nil {
		t.Fatal(err)
	}
	st.close()
	packs := len(s.Manifest.Packs())
	if packs == 0 || packs >= len(objects) {
		t.Fatalf("the test seed has %d packs of %d objects", packs, len(objects))
	}

	if r := cofferd(t, dir, "seed", "cancel", "abababab"); r.code != exitUsage {
		t.Fatalf("cancel without --tenant: %+v", r)
	}
	var out seedCancelOut
	r := cofferd(t, dir, "--json", "seed", "cancel", "--tenant", "acme", "abababab", "--reason", "lost by the courier")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Seed.State != vaultapi.SeedCancelled ||
		out.Seed.Reason != "lost by the courier" || out.LostPacks != packs {
		t.Fatalf("seed cancel --json: %+v", r)
	}
	r = cofferd(t, dir, "seed", "cancel", "--tenant", "acme", "abababab", "--reason", "other")
	if r.code != 0 || !strings.Contains(r.stdout, "(lost by the courier)") || !strings.Contains(r.stdout, "upload their chunks again") {
		t.Fatalf("seed cancel again: %+v", r)
	}
	if r := cofferd(t, dir, "seed", "list", "--tenant", "acme"); r.code != 0 || !strings.Contains(r.stdout, "cancelled on") || !strings.Contains(r.stdout, "lost by the courier") {
		t.Fatalf("seed list: %+v", r)
	}
	if r := cofferd(t, dir, "seed", "show", "--tenant", "acme", "abababab"); r.code != 0 || !strings.Contains(r.stdout, "it will never be imported") {
		t.Fatalf("seed show: %+v", r)
	}
	r = cofferd(t, dir, "seed", "import", "--tenant", "acme", seedDir)
	if r.code != exitFailure || !strings.Contains(r.stderr, "(lost by the courier): export a new seed") {
		t.Fatalf("import of a cancelled seed: %+v", r)
	}
}

// A tenant repository opened by cofferd forgets the packs its cancelled
// seed never delivered (its index files still name them), and restore
// refuses a snapshot that needed the seed, naming the cancel.
func TestTenantRepoForgetsLostPacks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	idFile, data, reg, ten, key := escrowSeedTenant(t, dir, 7)
	defer data.Close()
	sub, _ := store.ReadOnlySub(data, "repos/"+ten.ID+"/")
	rcs, err := repo.Receipts(ctx, sub, nil)
	if err != nil || len(rcs) != 1 || len(rcs[0].Packs) == 0 {
		t.Fatalf("receipts: %d %v", len(rcs), err)
	}
	// The seed held the snapshot's first pack, which never arrived.
	lostPack := rcs[0].Packs[0]
	sd := seedtest.New(t, key, ten.ID, lostPack)
	if _, err := jobs.RegisterSeed(ctx, reg.Swapper(), data, ten, sd.Body, sd.Sig, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := data.Delete(ctx, "repos/"+ten.ID+"/data/"+lostPack[:2]+"/"+lostPack); err != nil {
		t.Fatal(err)
	}
	rc := rcs[0]
	rc.Seed = sd.Manifest.ID
	b, _ := rc.Marshal()
	sum := sha256.Sum256(b)
	if err := data.Put(ctx, "repos/"+ten.ID+"/receipts/"+hex.EncodeToString(sum[:]), store.Bytes(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	if r := cofferd(t, dir, "seed", "cancel", "--tenant", "acme", sd.Manifest.ID, "--reason", "never sent"); r.code != 0 {
		t.Fatalf("seed cancel: %+v", r)
	}

	g := &globals{storeURL: "file://" + dir, clock: clock.Real}
	tr, err := g.openTenantRepo(ctx, "acme", idFile)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pack.ParseID(lostPack)
	if tr.repo.Index.HasPack(p) {
		t.Error("the index still names the pack the cancelled seed never delivered")
	}
	tr.close()
	r := cofferd(t, dir, "restore", "--tenant", "acme", "latest", "--name", "web01", "--to", filepath.Join(t.TempDir(), "o.img"), "--escrow-key", idFile)
	if r.code == 0 || !strings.Contains(r.stderr, "needed seed "+sd.Manifest.ID[:12]+", cancelled on") || !strings.Contains(r.stderr, "(never sent)") {
		t.Fatalf("restore of a lost snapshot: %+v", r)
	}
}
