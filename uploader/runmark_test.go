package uploader_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/uploader"
)

// scanRig is a small repository in a local store whose pack listings are
// counted, with a state directory for run marks.
type scanRig struct {
	t          *testing.T
	dir, state string
	img        string
	lists      *dataLists
}

func newScanRig(t *testing.T) *scanRig {
	dir := t.TempDir()
	local, err := store.OpenLocal(filepath.Join(dir, "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	s := &scanRig{t: t, dir: dir, state: filepath.Join(dir, "state"), img: filepath.Join(dir, "disk.img"), lists: &dataLists{Store: local}}
	initRepo(t, s.lists)
	writeImage(t, s.img, 6<<20, 3)
	return s
}

// backup opens the repository afresh (index skipping what it cannot read,
// as the command line does), backs the image up, and checks whether it
// listed the packs.
func (s *scanRig) backup(what string, wantScan bool) *uploader.Result {
	s.t.Helper()
	r, err := repo.Open(s.t.Context(), s.lists, []byte("pw"))
	if err != nil {
		s.t.Fatal(err)
	}
	if err := r.LoadIndex(s.t.Context(), func(string, error) {}); err != nil {
		s.t.Fatal(err)
	}
	before := s.lists.n.Load()
	res, err := backupImage(s.t, r, s.img, uploader.Options{Name: "disk", StateDir: s.state})
	if err != nil {
		s.t.Fatalf("%s: %v", what, err)
	}
	if scanned := s.lists.n.Load() > before; res.OrphanScan != wantScan || scanned != wantScan {
		s.t.Fatalf("%s: OrphanScan %v, listed packs %v; want %v", what, res.OrphanScan, scanned, wantScan)
	}
	return res
}

func (s *scanRig) plantJunk(prefix string, b []byte) string {
	sum := sha256.Sum256(b)
	name := prefix + hex.EncodeToString(sum[:])
	if err := s.lists.Put(s.t.Context(), name, bytes.NewReader(b), int64(len(b))); err != nil {
		s.t.Fatal(err)
	}
	return name
}

// TestJunkIndexListsPacksOnce: a junk index file (planted with an agent
// credential) makes one backup list the packs, not every backup; a new
// junk file makes the next one list again.
func TestJunkIndexListsPacksOnce(t *testing.T) {
	s := newScanRig(t)
	s.backup("first run", false)
	s.plantJunk(repo.IndexPrefix, bytes.Repeat([]byte{7}, 500))
	s.backup("with a new junk index", true)
	s.backup("with the same junk index", false)
	s.backup("and again", false)
	s.plantJunk(repo.IndexPrefix, bytes.Repeat([]byte{8}, 500))
	s.backup("with a second junk index", true)
	s.backup("after that", false)
}

// TestYoungTempFileIsCleanedLater: a pack half-written by a backup killed
// less than TempGrace before the rerun is too young to remove then; the
// dead run's mark stays, so a later run removes it, and the one after that
// lists nothing.
func TestYoungTempFileIsCleanedLater(t *testing.T) {
	s := newScanRig(t)
	s.backup("first run", false)
	// What kill -9 leaves: an unlocked mark, and a half-written pack.
	if err := os.MkdirAll(s.state, 0o700); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(s.state, "run-00000000000000aa")
	if err := os.WriteFile(dead, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	half := filepath.Join(s.dir, "repo", "data", "ab", ".tmp-00000000000000cc")
	if err := os.MkdirAll(filepath.Dir(half), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(half, []byte("half a pack"), 0o600); err != nil {
		t.Fatal(err)
	}
	if res := s.backup("rerun at once", true); res.TempRemoved != 0 {
		t.Fatalf("a young temporary file was removed: %+v", res)
	}
	if _, err := os.Stat(dead); err != nil {
		t.Fatalf("the dead run's mark was removed although its temporary file is left: %v", err)
	}
	past := time.Now().Add(-2 * store.TempGrace)
	if err := os.Chtimes(half, past, past); err != nil {
		t.Fatal(err)
	}
	if res := s.backup("a later run", true); res.TempRemoved != 1 {
		t.Fatalf("the half-written pack was not removed: %d files", res.TempRemoved)
	}
	if _, err := os.Stat(half); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("half-written pack: %v", err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("dead mark: %v", err)
	}
	s.backup("the run after", false)
}

func TestRunInProgress(t *testing.T) {
	s := newScanRig(t)
	if uploader.RunInProgress(s.state) {
		t.Fatal("a missing state directory shows a run")
	}
	if err := os.MkdirAll(s.state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.state, "run-00000000000000aa"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if uploader.RunInProgress(s.state) {
		t.Fatal("a dead run's mark shows a run")
	}
	f := holdMark(t, s.state)
	if !uploader.RunInProgress(s.state) {
		t.Fatal("a held mark shows no run")
	}
	f.Close()
	if uploader.RunInProgress(s.state) {
		t.Fatal("a released mark still shows a run")
	}
}

// holdMark makes a run mark in dir and holds its lock, as a running backup
// does, until the returned file is closed.
func holdMark(t *testing.T, dir string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "run-00000000000000bb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return f
}
