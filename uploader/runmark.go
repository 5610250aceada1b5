package uploader

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Run marks tell a backup whether the last one on this machine ended
// cleanly, so that it lists the repository's packs (to index those a
// killed run uploaded but did not index) only when one did not: listing
// costs a request per thousand packs, which on a tenant of tens of TiB is
// hundreds of requests a night for nothing.
//
// A backup creates a file run-<16 hex> in Options.StateDir and holds an
// flock on it for its life; it removes the file when it succeeds. The
// kernel drops the lock however a process ends, so a mark that can be
// locked belongs to a backup that failed, was killed or lost power; the
// next backup then lists, and removes those marks once the packs they may
// have left are indexed. A mark another backup holds is a backup still
// running, and is left alone.
const runMarkPrefix = "run-"

// runMark is this backup's mark.
type runMark struct {
	f    *os.File
	path string
}

// beginRun makes this backup's mark in dir and returns it with the marks
// of earlier backups that did not end cleanly.
func beginRun(dir string) (*runMark, []string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("state directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("state directory: %w", err)
	}
	var dead []string
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), runMarkPrefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if held, err := markHeld(p); err == nil && !held {
			dead = append(dead, p)
		}
	}
	// Made under another name and locked before it takes its own, so that
	// no other backup ever sees it unlocked and takes it for dead.
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	name := hex.EncodeToString(rnd[:])
	tmp, p := filepath.Join(dir, ".new-"+name), filepath.Join(dir, runMarkPrefix+name)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("state directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		_ = os.Remove(tmp)
		return nil, nil, fmt.Errorf("state directory: locking %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		f.Close()
		_ = os.Remove(tmp)
		return nil, nil, fmt.Errorf("state directory: %w", err)
	}
	// Durable before the first upload, so that a power cut cannot leave
	// uploaded packs behind without a mark that says so.
	if err := f.Sync(); err == nil {
		if d, err := os.Open(dir); err == nil {
			_ = d.Sync()
			d.Close()
		}
	}
	return &runMark{f: f, path: p}, dead, nil
}

// markHeld reports whether a live backup holds the mark at p.
func markHeld(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return true, nil
	}
	return false, err
}

// end removes the mark of a backup that succeeded, and the directory when
// no other mark is left in it, so that repositories come and gone leave no
// trace in the cache.
func (m *runMark) end() {
	_ = os.Remove(m.path)
	m.f.Close()
	_ = os.Remove(filepath.Dir(m.path)) // fails, as it should, unless empty
}

// abandon lets go of the mark of a backup that failed, leaving the file so
// the next backup lists the packs this one may have left unindexed.
func (m *runMark) abandon() { m.f.Close() }

// removeMarks removes the marks of earlier backups once what they may have
// left is indexed.
func removeMarks(paths []string) error {
	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RunInProgress reports whether a backup on this machine holds a run mark
// in dir: a backup of that repository is running now.
func RunInProgress(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), runMarkPrefix) {
			continue
		}
		if held, err := markHeld(filepath.Join(dir, e.Name())); err == nil && held {
			return true
		}
	}
	return false
}

// skippedIndexFile, in the state directory, names the index files (one a
// line) that LoadIndex skipped — damaged, or junk that does not open with
// the key — and that a listing of the packs has since covered: the packs a
// damaged one listed were indexed again then. A skipped index file named
// there does not make the next backup list the packs again; only one it
// has not seen does.
const skippedIndexFile = "skipped-index"

// newSkippedIndexes returns the names in skipped that dir does not
// remember as covered.
func newSkippedIndexes(dir string, skipped []string) []string {
	b, _ := os.ReadFile(filepath.Join(dir, skippedIndexFile))
	known := map[string]bool{}
	for _, n := range strings.Split(string(b), "\n") {
		known[n] = true
	}
	var out []string
	for _, n := range skipped {
		if !known[n] {
			out = append(out, n)
		}
	}
	return out
}

// rememberSkippedIndexes records, after a listing of the packs, the index
// files this run skipped (replacing the old list, so names of removed files
// do not pile up). An empty list removes the file.
func rememberSkippedIndexes(dir string, skipped []string) error {
	p := filepath.Join(dir, skippedIndexFile)
	if len(skipped) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	f, err := os.CreateTemp(dir, ".new-skipped-")
	if err != nil {
		return err
	}
	_, err = f.WriteString(strings.Join(skipped, "\n") + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}
