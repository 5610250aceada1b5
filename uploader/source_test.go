package uploader_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
)

// shrinkingSource is an image whose file is cut short after the first
// region is read, as a disk that shrinks during the backup.
type shrinkingSource struct {
	*source.ImageSource
	path string
	at   int64
	once bool
}

func (s *shrinkingSource) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.at && !s.once {
		s.once = true
		if err := os.Truncate(s.path, s.at); err != nil {
			return 0, err
		}
	}
	return s.ImageSource.ReadAt(p, off)
}

func snapshotCount(t *testing.T, r *repo.Repo) int {
	t.Helper()
	ids, err := r.SnapshotIDs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(ids)
}

// A disk that shrinks while it is read (a short read) or that changes size
// by the end of the backup fails with ErrSourceChanged in a SourceError,
// and no snapshot is saved.
func TestBackupFailsWhenSourceChangesSize(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenLocal(filepath.Join(dir, "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	r := initRepo(t, st)
	img := filepath.Join(dir, "disk.img")
	t.Run("shrinks", func(t *testing.T) {
		writeImage(t, img, 3<<26, 5)
		src, err := source.OpenImage(img)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		b, err := uploader.New(r, &shrinkingSource{ImageSource: src, path: img, at: 1 << 26}, uploader.Options{Name: "s", Workers: 1})
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.Run(context.Background())
		checkChanged(t, err, img)
	})
	t.Run("grows", func(t *testing.T) {
		writeImage(t, img, 1<<20, 6)
		src, err := source.OpenImage(img)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		if err := os.Truncate(img, 2<<20); err != nil {
			t.Fatal(err)
		}
		b, err := uploader.New(r, src, uploader.Options{Name: "s"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.Run(context.Background())
		checkChanged(t, err, img)
		if !strings.Contains(err.Error(), "1048576 bytes when the backup started and is 2097152 now") {
			t.Fatalf("message %q does not give both sizes", err)
		}
	})
	if n := snapshotCount(t, r); n != 0 {
		t.Fatalf("%d snapshots saved of a disk that changed", n)
	}
}

func checkChanged(t *testing.T, err error, path string) {
	t.Helper()
	var se *source.SourceError
	if !errors.Is(err, source.ErrSourceChanged) || !errors.As(err, &se) || se.Path != path {
		t.Fatalf("backup of a disk that changed size: %v; want a SourceError with ErrSourceChanged for %s", err, path)
	}
}

// What a backup reports as read never exceeds the disk: a block read with
// a run and again when the next run is looked for counts once.
func TestReadNeverExceedsSize(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenLocal(filepath.Join(dir, "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	r := initRepo(t, st)
	const bs = 64 << 10
	size := int64(4 << 20)
	buf := make([]byte, size)
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for b := int64(1); b < size/bs; b += 3 { // a zero block after every two data blocks
		clear(buf[b*bs : (b+1)*bs])
	}
	img := filepath.Join(dir, "striped.img")
	if err := os.WriteFile(img, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := backupImage(t, r, img, uploader.Options{Name: "striped"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Read != size {
		t.Fatalf("read %d bytes of a %d-byte disk with no holes; want exactly its size", res.Read, size)
	}
}
