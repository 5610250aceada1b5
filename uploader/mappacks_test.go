package uploader_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/uploader"
)

// TestReceiptMapCache: with a cache directory, the second night's receipt
// takes the packs of unchanged region maps from the cache and names exactly
// the packs the first computation (and one without a cache) names; a pack
// dropped from the index makes its maps be read again.
func TestReceiptMapCache(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	local, err := store.OpenLocal(filepath.Join(dir, "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	r := initRepo(t, local)
	img := filepath.Join(dir, "disk.img")
	writeImage(t, img, 200<<20, 3)
	cache := filepath.Join(dir, "cache")
	res1, err := backupImage(t, r, img, uploader.Options{Name: "d", CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cache, "map-packs")); err != nil {
		t.Fatalf("no map cache after a clean run: %v", err)
	}
	want, err := r.SnapshotPacks(ctx, res1.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := repo.Open(ctx, local, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.LoadIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	noCache, err := fresh.SnapshotPacks(ctx, res1.Snapshot)
	if err != nil || !slices.Equal(noCache, want) {
		t.Fatalf("without a cache: %v (%v); with: %v", noCache, err, want)
	}
	c := repo.OpenMapPackCache(filepath.Join(cache, "map-packs"))
	fresh.SetMapPackCache(c)
	got, err := fresh.SnapshotPacks(ctx, res1.Snapshot)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("from the cache: %v (%v), want %v", got, err, want)
	}
	// A pack the vault's collector named is dropped from the index: the
	// maps naming it are read again, and the receipt is still exact.
	fresh.Index.ForgetPacks([]pack.ID{want[0]})
	got, err = fresh.SnapshotPacks(ctx, res1.Snapshot)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("after a pack left the index: %v (%v), want %v", got, err, want)
	}
}
