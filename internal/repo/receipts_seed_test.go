package repo_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

// SetReceiptSeed: a receipt names the seed exactly when the hook finds one
// of the snapshot's packs on it, and the hook sees every pack the snapshot
// needs; without a hook no receipt names a seed.
func TestReceiptSeed(t *testing.T) {
	repofixture.UseInsecureKDF()
	f := repofixture.New(t, "pw")
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(7, 8))
	image := func() *repofixture.Image {
		return &repofixture.Image{Size: manifest.RegionSize, Pieces: []repofixture.Piece{{Off: 0, Data: repofixture.RandBytes(rng, 1<<20)}}}
	}
	onSeed := f.Snapshot("on-seed", f.Disk(0, image(), nil))
	elsewhere := f.Snapshot("elsewhere", f.Disk(0, image(), nil))
	r := f.Reopen()
	seedPacks, err := r.SnapshotPacks(ctx, onSeed.Snapshot)
	if err != nil || len(seedPacks) == 0 {
		t.Fatalf("SnapshotPacks: %v %v", seedPacks, err)
	}
	id := strings.Repeat("5e", 32)
	var seen [][]pack.ID
	r.SetReceiptSeed(func(packs []pack.ID) string {
		seen = append(seen, packs)
		for _, p := range packs {
			if slices.Contains(seedPacks, p) {
				return id
			}
		}
		return ""
	})
	rc, err := r.NewReceipt(ctx, onSeed.ID, onSeed.Snapshot)
	if err != nil || rc.Seed != id {
		t.Fatalf("receipt of a snapshot on the seed: Seed %q, %v; want %s", rc.Seed, err, id)
	}
	if len(seen) != 1 || !slices.Equal(seen[0], seedPacks) {
		t.Fatalf("the hook saw %v; want the snapshot's packs %v", seen, seedPacks)
	}
	if err := rc.Validate(); err != nil {
		t.Fatalf("a receipt naming a seed does not validate: %v", err)
	}
	rc, err = r.NewReceipt(ctx, elsewhere.ID, elsewhere.Snapshot)
	if err != nil || rc.Seed != "" {
		t.Fatalf("receipt of a snapshot sharing no pack with the seed: Seed %q, %v; want none", rc.Seed, err)
	}
	r.SetReceiptSeed(nil)
	if rc, err = r.NewReceipt(ctx, onSeed.ID, onSeed.Snapshot); err != nil || rc.Seed != "" {
		t.Fatalf("without a hook: Seed %q, %v", rc.Seed, err)
	}
}
