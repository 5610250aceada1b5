package uploader_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/restore"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/testfile"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
)

func init() { os.Setenv("COFFER_INSECURE_TEST_KDF", "1") }

// writeImage writes a mixed test image: 1 MiB regions of holes, random
// bytes and text-like bytes.
func writeImage(t *testing.T, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	buf := make([]byte, 1<<20)
	words := []string{"lorem ", "ipsum ", "backup ", "vault ", "disk ", "chunk ", "\n", "tenant ", "2026-11-25 ", "ERROR ", "INFO "}
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		switch k := rng.IntN(10); {
		case k < 5: // hole
			continue
		case k < 7:
			for i := range buf[:n] {
				buf[i] = byte(rng.Uint32())
			}
		default:
			var b bytes.Buffer
			for int64(b.Len()) < n {
				b.WriteString(words[rng.IntN(len(words))])
			}
			copy(buf, b.Bytes()[:n])
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			t.Fatal(err)
		}
	}
}

// initRepo creates a repository with passphrase "pw" in st.
func initRepo(t *testing.T, st store.Store) *repo.Repo {
	t.Helper()
	r, err := repo.Init(context.Background(), st, []byte("pw"), repo.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newLocalRepo makes a repository (passphrase "pw") in a new directory's
// "repo" folder and returns the directory, the store and the repository.
func newLocalRepo(t *testing.T) (string, store.Store, *repo.Repo) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenLocal(filepath.Join(dir, "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	return dir, st, initRepo(t, st)
}

// backupImage backs the image at path up into r.
func backupImage(t *testing.T, r *repo.Repo, path string, opt uploader.Options) (*uploader.Result, error) {
	t.Helper()
	src, err := source.OpenImage(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	b, err := uploader.New(r, src, opt)
	if err != nil {
		t.Fatal(err)
	}
	return b.Run(context.Background())
}

func TestBackupRestoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir, st, r := newLocalRepo(t)
	img := filepath.Join(dir, "disk.img")
	// Not a multiple of the block or region size, to exercise the tails.
	writeImage(t, img, 150<<20+12345, 1)
	res, err := backupImage(t, r, img, uploader.Options{Name: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	if res.NewChunks == 0 || res.StoredBytes == 0 {
		t.Fatalf("nothing stored: %+v", res.Progress)
	}

	// A fresh open sees the snapshot through the stored index.
	r2, err := repo.Open(ctx, st, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.LoadIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	snap, err := r2.FindSnapshot(ctx, "latest", "disk")
	if err != nil {
		t.Fatal(err)
	}
	if snap.ID != res.SnapshotID {
		t.Fatalf("latest is %s, backup made %s", snap.ID, res.SnapshotID)
	}
	out := filepath.Join(dir, "out.img")
	rr, err := restore.New(r2, &snap.Disks[0], restore.Options{}).Run(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if !rr.Verified {
		t.Fatal("restore not verified")
	}
	if testfile.SHA256(t, img) != testfile.SHA256(t, out) {
		t.Fatal("restored image differs")
	}

	// A second backup of the same image stores no new data chunks, and
	// removes the half-written pack a killed run left (an unlocked
	// temporary file older than the grace).
	stale := filepath.Join(dir, "repo", "data", "00", ".tmp-0011223344556677")
	if err := os.MkdirAll(filepath.Dir(stale), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, make([]byte, 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * store.TempGrace)
	if err := os.Chtimes(stale, past, past); err != nil {
		t.Fatal(err)
	}
	res2, err := backupImage(t, r2, img, uploader.Options{Name: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	if res2.NewChunks != 0 {
		t.Fatalf("second backup of an unchanged image stored %d new chunks", res2.NewChunks)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) || res2.TempRemoved != 1 || res2.TempRemovedBytes != 1000 || len(res2.Warnings) != 0 {
		t.Fatalf("stale temporary file: stat %v; result %d files, %d bytes, warnings %q", err, res2.TempRemoved, res2.TempRemovedBytes, res2.Warnings)
	}
}

// TestZeroBlocksInsideData: all-zero blocks written out (not holes) inside
// data are skipped like holes, at any position of the chunker's buffer, and
// the image still restores byte-identical with the right digest.
func TestZeroBlocksInsideData(t *testing.T) {
	ctx := context.Background()
	dir, _, r := newLocalRepo(t)
	const bs = 64 << 10
	size := int64(70<<20 + 4321) // two regions, a partial last block
	buf := make([]byte, size)
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	// Zero blocks: single, runs, at the start of a 512 KiB chunker read,
	// in the middle of one, at a region boundary, and the partial tail.
	for _, b := range []int64{0, 3, 8, 9, 10, 17, 500, 1023, 1024, 1025} {
		clear(buf[b*bs : (b+1)*bs])
	}
	clear(buf[size-4321:])
	img := filepath.Join(dir, "zeros.img")
	if err := os.WriteFile(img, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := backupImage(t, r, img, uploader.Options{Name: "z"})
	if err != nil {
		t.Fatal(err)
	}
	wantData := size - 10*bs - 4321
	if got := res.Snapshot.Disks[0].Stats.DataBytes; got != wantData {
		t.Errorf("chunked %d bytes, want %d (the zero blocks must be skipped)", got, wantData)
	}
	out := filepath.Join(dir, "out.img")
	if _, err := restore.New(r, &res.Snapshot.Disks[0], restore.Options{}).Run(ctx, out); err != nil {
		t.Fatal(err)
	}
	if testfile.SHA256(t, img) != testfile.SHA256(t, out) {
		t.Fatal("restored image differs")
	}
}
