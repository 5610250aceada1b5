package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/seed"
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
