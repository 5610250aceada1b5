package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/fsx"
)

// Local is a store in a directory of the local file system. Object names map
// to paths below the root; Put writes a temporary file, fsyncs it, renames it
// into place without replacing (renameat2 RENAME_NOREPLACE, or link+unlink on
// file systems without it), and fsyncs the directory.
type Local struct {
	root string

	linksMu sync.Mutex
	links   map[string]bool // symbolic links List skipped

	clock clock.Clock // ages temporary files
}

// SetClock replaces the wall clock that ages temporary files, for tests.
func (l *Local) SetClock(c clock.Clock) { l.clock = clock.Or(c) }

// SkippedLinks names the symbolic links below the root that List has met
// and skipped, sorted, so that check can report them.
func (l *Local) SkippedLinks() []string {
	l.linksMu.Lock()
	defer l.linksMu.Unlock()
	out := make([]string, 0, len(l.links))
	for n := range l.links {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (l *Local) noteLink(name string) {
	l.linksMu.Lock()
	defer l.linksMu.Unlock()
	if l.links == nil {
		l.links = map[string]bool{}
	}
	l.links[name] = true
}

// SkippedLinks returns the symbolic links s's listings skipped, when s is
// (below its decorators) a local directory store.
func SkippedLinks(s Store) []string {
	for {
		if l, ok := s.(*Local); ok {
			return l.SkippedLinks()
		}
		w, ok := s.(Wrapper)
		if !ok {
			return nil
		}
		s = w.Unwrap()
	}
}

// tmpPrefix starts the name of a file being written: a random 16 hex
// digits follow. List never shows such files.
const tmpPrefix = ".tmp-"

// TempGrace is how old an unlocked temporary file must be before
// RemoveStaleTemp takes it for a dead writer's: longer than any gap between
// creating a temporary file and locking or renaming it.
const TempGrace = time.Minute

// RemoveStaleTemp implements TempCleaner. A writer holds an flock on its
// temporary file until it has renamed it, and the kernel drops the lock when
// the writer dies, however it dies; so a temporary file that nobody holds
// and that is older than TempGrace belongs to a writer that is gone (a
// backup killed with kill -9, a crash, a power cut) and is removed. Files
// that cannot be locked (held, or a file system without flock) are left.
// Younger files are neither locked nor removed (a writer may be between
// creating and locking one) but counted in Young, so that the caller can
// look again later.
func (l *Local) RemoveStaleTemp(ctx context.Context) (TempReport, error) {
	var rep TempReport
	cutoff := l.clock.Now().Add(-TempGrace)
	err := filepath.WalkDir(l.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking
			}
			return translateFS(err)
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if d.IsDir() || !isTempName(d.Name()) {
			return nil
		}
		info, err := d.Info()
		if err != nil || !info.Mode().IsRegular() {
			return nil
		}
		if info.ModTime().After(cutoff) {
			rep.Young++
			return nil
		}
		removed, err := removeIfUnlocked(p)
		if removed {
			rep.Removed++
			rep.Bytes += info.Size()
		}
		return err
	})
	return rep, err
}

// removeIfUnlocked removes the temporary file at p unless a writer holds
// its lock.
func removeIfUnlocked(p string) (bool, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false, nil // renamed or removed meanwhile
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false, nil // its writer is alive
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("removing the stale temporary file %s: %w", p, translateFS(err))
	}
	return true, nil
}

// isTempName reports whether a file name is one Put gives a temporary file.
func isTempName(n string) bool {
	hexPart, ok := strings.CutPrefix(n, tmpPrefix)
	if !ok || len(hexPart) != 16 {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil
}

// OpenLocal opens a directory store. With create it makes the directory.
func OpenLocal(root string, create bool) (*Local, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if create {
		if err := os.MkdirAll(abs, 0o700); err != nil {
			return nil, fmt.Errorf("creating repository directory %s: %w", abs, translateFS(err))
		}
	}
	st, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("repository directory %s: %w", abs, ErrNotFound)
		}
		return nil, translateFS(err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("repository path %s is not a directory", abs)
	}
	return &Local{root: abs, clock: clock.Real}, nil
}

// Location implements Store.
func (l *Local) Location() string { return "file://" + l.root }

// Close implements Store.
func (l *Local) Close() error { return nil }

func (l *Local) path(name string) (string, error) {
	if err := ValidName(name); err != nil {
		return "", err
	}
	return filepath.Join(l.root, filepath.FromSlash(name)), nil
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	commit, err := l.PutDeferred(ctx, name, r, size)
	if err != nil {
		return err
	}
	return commit(ctx)
}

// PutDeferred implements DeferredPutter: it writes the bytes to a temporary
// file and returns; commit fsyncs it, renames it into place (create-only)
// and fsyncs the directory. Until commit returns nil the object is neither
// visible nor durable. No symbolic link below the root is followed: a
// symlinked directory on the way, or a symlink where the object would go,
// fails the put (ErrSymlink).
func (l *Local) PutDeferred(ctx context.Context, name string, r io.ReaderAt, size int64) (commit func(context.Context) error, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, base, err := l.openDir(name, true)
	if err != nil {
		return nil, err
	}
	if err := l.checkAbsent(dir, name, base); err != nil {
		dir.Close()
		return nil, err
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := tmpPrefix + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(int(dir.Fd()), tmp, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		dir.Close()
		return nil, fmt.Errorf("%s: %w", name, translateFS(err))
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), tmp))
	// The lock says the temporary file is in use until it is renamed;
	// RemoveStaleTemp removes only files nobody holds. Best effort: a file
	// system without flock makes the cleaner leave every file alone.
	_ = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	discard := func() {
		_ = f.Close()
		_ = unix.Unlinkat(int(dir.Fd()), tmp, 0)
		dir.Close()
	}
	n, err := writeObject(f, r, size)
	if err != nil {
		discard()
		return nil, fmt.Errorf("%s: writing: %w", name, translateFS(err))
	}
	if n != size {
		discard()
		return nil, fmt.Errorf("%s: source gave %d bytes, want %d", name, n, size)
	}
	return func(ctx context.Context) error {
		if err := ctx.Err(); err != nil {
			discard()
			return err
		}
		if err := f.Sync(); err != nil {
			discard()
			return fmt.Errorf("%s: fsync: %w", name, translateFS(err))
		}
		// Renamed before it is closed, so the lock covers the file for
		// as long as it has its temporary name.
		if err := fsx.RenameatNoReplace(int(dir.Fd()), tmp, base); err != nil {
			discard()
			if errors.Is(err, fs.ErrExist) {
				return l.checkAbsent(nil, name, base)
			}
			return fmt.Errorf("%s: rename: %w", name, translateFS(err))
		}
		defer dir.Close()
		if err := f.Close(); err != nil {
			return fmt.Errorf("%s: close: %w", name, translateFS(err))
		}
		if err := dir.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("%s: fsync directory: %w", name, translateFS(err))
		}
		return nil
	}, nil
}

// DefersPuts implements DeferredPutter.
func (l *Local) DefersPuts() bool { return true }

func syncDir(dir string) error {
	if err := fsx.SyncDir(dir); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, translateFS(err))
	}
	return nil
}

// Get implements Store. It never follows a symbolic link below the root.
func (l *Local) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := l.openObject(name)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return translateFS(err)
	}
	if st.IsDir() { // a name prefix, not an object
		return fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if off < 0 || off > st.Size() || (length >= 0 && off+length > st.Size()) {
		return fmt.Errorf("%s: range %d+%d outside object of %d bytes: %w", name, off, length, st.Size(), ErrInvalidRange)
	}
	if length < 0 {
		length = st.Size() - off
	}
	return fn(io.NewSectionReader(f, off, length))
}

// openObject opens name for reading without following a symbolic link
// anywhere below the root.
func (l *Local) openObject(name string) (*os.File, error) {
	dir, base, err := l.openDir(name, false)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	fd, err := unix.Openat(int(dir.Fd()), base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, symlinkError(name, name)
		}
		return nil, fmt.Errorf("%s: %w", name, translateFS(err))
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir.Name(), base)), nil
}

// Stat implements Store. It never follows a symbolic link below the root.
func (l *Local) Stat(ctx context.Context, name string) (Info, error) {
	dir, base, err := l.openDir(name, false)
	if err != nil {
		return Info{}, err
	}
	defer dir.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return Info{}, fmt.Errorf("%s: %w", name, translateFS(err))
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return Info{Name: name, Size: st.Size, ModTime: time.Unix(st.Mtim.Unix())}, nil
	case unix.S_IFLNK:
		return Info{}, symlinkError(name, name)
	}
	return Info{}, fmt.Errorf("%s: %w", name, ErrNotFound) // a name prefix, not an object
}

// List implements Store. Symbolic links are skipped, never followed; a
// symlinked directory on the way to the prefix is an ErrSymlink error.
func (l *Local) List(ctx context.Context, prefix string, fn func(Info) error) error {
	if err := ValidPrefix(prefix); err != nil {
		return err
	}
	// Walk the deepest directory the prefix names completely.
	dir := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dir = prefix[:i]
	}
	start := filepath.Join(l.root, filepath.FromSlash(dir))
	if dir != "" {
		// The directories down to start must not be symbolic links
		// (WalkDir follows all but the last).
		d, _, err := l.openDir(dir+"/x", false)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		d.Close()
	}
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == start {
				return filepath.SkipAll
			}
			return translateFS(err)
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if d.IsDir() {
			if p != start && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir // .locks and the like: never objects
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			return nil // temporary files
		}
		rel, err := filepath.Rel(l.root, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if !strings.HasPrefix(name, prefix) {
			return nil
		}
		if !d.Type().IsRegular() {
			// Symbolic links and other non-files are never objects
			// (WalkDir does not follow symlinked directories either).
			if d.Type()&fs.ModeSymlink != 0 {
				l.noteLink(name)
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while listing
			}
			return translateFS(err)
		}
		return fn(Info{Name: name, Size: info.Size(), ModTime: info.ModTime()})
	})
	return err
}

// Delete implements Store. A symbolic link below the root is never
// followed: one on the way fails the delete (ErrSymlink), and one at the
// object's name is removed itself, never what it points to.
func (l *Local) Delete(ctx context.Context, name string) error {
	dir, base, err := l.openDir(name, false)
	if errors.Is(err, ErrNotFound) {
		return nil // its directory may be missing too
	}
	if err != nil {
		return err
	}
	defer dir.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return nil // a name prefix, not an object
	}
	if err := unix.Unlinkat(int(dir.Fd()), base, 0); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("%s: %w", name, translateFS(err))
	}
	if err := dir.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("%s: fsync directory: %w", name, translateFS(err))
	}
	return nil
}

// ErrSymlink is wrapped by the error of a local store operation that met a
// symbolic link below the store's root. Coffer never makes one, and never
// follows one: a link planted inside the store could otherwise make it read
// or write files outside it.
var ErrSymlink = errors.New("is a symbolic link, which Coffer never creates or follows")

func symlinkError(name, link string) error {
	return &PermanentError{Err: fmt.Errorf("%s: %s %w; remove the link from the store (after checking where it points and who made it)", name, link, ErrSymlink)}
}

// openDir opens the directory that holds name's last component, walking
// from the root one component at a time without following symbolic links
// (O_NOFOLLOW), and returns it with that last component. With create it
// makes missing directories. A symlinked directory on the way is an
// ErrSymlink error naming it; a missing one is ErrNotFound.
func (l *Local) openDir(name string, create bool) (*os.File, string, error) {
	if err := ValidName(name); err != nil {
		return nil, "", err
	}
	parts := strings.Split(name, "/")
	fd, err := unix.Open(l.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, translateFS(err))
	}
	for i, part := range parts[:len(parts)-1] {
		next, err := openDirAt(fd, part, create)
		if err != nil {
			unix.Close(fd)
			if errors.Is(err, ErrSymlink) {
				return nil, "", symlinkError(name, strings.Join(parts[:i+1], "/"))
			}
			return nil, "", fmt.Errorf("%s: %w", name, translateFS(err))
		}
		unix.Close(fd)
		fd = next
	}
	dir := filepath.Join(l.root, filepath.FromSlash(strings.Join(parts[:len(parts)-1], "/")))
	return os.NewFile(uintptr(fd), dir), parts[len(parts)-1], nil
}

// openDirAt opens the directory part inside dirfd without following a
// symbolic link, making it first when create is set and it is missing.
func openDirAt(dirfd int, part string, create bool) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dirfd, part, flags, 0)
	if errors.Is(err, unix.ENOENT) && create {
		if err := unix.Mkdirat(dirfd, part, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		fd, err = unix.Openat(dirfd, part, flags, 0)
	}
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, part, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return -1, ErrSymlink
		}
	}
	return fd, err
}

// checkAbsent returns nil when nothing is stored under base in dir (nil:
// look name up afresh), ErrExists when an object is, and an ErrSymlink
// error when a symbolic link is.
func (l *Local) checkAbsent(dir *os.File, name, base string) error {
	if dir == nil {
		d, b, err := l.openDir(name, false)
		if err != nil {
			return err
		}
		defer d.Close()
		dir, base = d, b
	}
	var st unix.Stat_t
	err := unix.Fstatat(int(dir.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case err != nil:
		return nil
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return symlinkError(name, name)
	}
	return fmt.Errorf("%s: %w", name, ErrExists)
}

// translateFS maps file-system errors to the store sentinels.
func translateFS(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w (%v)", ErrNotFound, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w (%v)", ErrDenied, err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%w: free space on the repository's disk, then run the command again (%v)", ErrNoSpace, err)
	}
	return err
}

// writeObject writes the size bytes of r to the new file f: a Bytes source
// in place (its aligned bulk with direct I/O), anything else through a copy.
func writeObject(f *os.File, r io.ReaderAt, size int64) (int64, error) {
	b, ok := r.(Bytes)
	if !ok || int64(len(b)) != size {
		return io.Copy(f, io.NewSectionReader(r, 0, size))
	}
	n, err := writeDirect(f, b)
	if err != nil {
		return int64(n), err
	}
	m, err := f.WriteAt(b[n:], int64(n))
	return int64(n + m), err
}

// TempSweepInterval is how often a long-running process (cofferd serve)
// sweeps its local directory store for the temporary files of dead
// writers: often enough that a file too young at one sweep goes at the
// next, rarely enough that the walk costs nothing noticeable.
const TempSweepInterval = 10 * time.Minute

// SweepTemp runs RemoveStaleTemp on s at once and then every interval
// until ctx ends, calling report after each sweep that removed something,
// left something young, or failed. A store without temporary files (S3)
// returns at once.
func SweepTemp(ctx context.Context, s Store, interval time.Duration, report func(TempReport, error)) {
	if !hasTempCleaner(s) {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		rep, err := RemoveStaleTemp(ctx, s)
		if ctx.Err() != nil {
			return
		}
		if err != nil || rep != (TempReport{}) {
			report(rep, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func hasTempCleaner(s Store) bool {
	for {
		if _, ok := s.(TempCleaner); ok {
			return true
		}
		w, ok := s.(Wrapper)
		if !ok {
			return false
		}
		s = w.Unwrap()
	}
}
