package store

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/cofferhq/coffer/internal/fsx"
)

// locksDir holds Local's lock files. Its name starts with a dot, so it can
// never collide with an object name and listings skip it.
const locksDir = ".locks"

// ReadVersioned implements Swapper. The version is the hex SHA-256 of the
// bytes. Objects are replaced by rename, so a read without the lock still
// sees one whole version.
func (l *Local) ReadVersioned(ctx context.Context, name string, max int64) ([]byte, string, error) {
	p, err := l.path(name)
	if err != nil {
		return nil, "", err
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	b, err := readMax(p, name, max)
	if err != nil {
		return nil, "", err
	}
	return b, localVersion(b), nil
}

// Swap implements Swapper: under an exclusive flock on a per-name lock file it
// compares the current version, writes a temporary file, fsyncs it, renames
// it over the object and fsyncs the directory.
//
// The lock is an flock(2) on <root>/.locks/: it serialises processes on one
// host. It is not trusted over NFS or other network file systems, so replicas
// sharing a Local store must run on the same host.
func (l *Local) Swap(ctx context.Context, name string, b []byte, ifVersion string) (string, error) {
	p, err := l.path(name)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	unlock, err := l.lock(name)
	if err != nil {
		return "", err
	}
	defer unlock()

	cur, err := os.ReadFile(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if ifVersion != "" {
			return "", fmt.Errorf("%s: object is gone: %w", name, ErrConflict)
		}
	case errors.Is(err, unix.EISDIR), errors.Is(err, unix.ENOTDIR):
		return "", &PermanentError{Err: fmt.Errorf("%s: the name clashes with a prefix of other objects", name)}
	case err != nil:
		return "", fmt.Errorf("%s: %w", name, translateFS(err))
	case ifVersion == "":
		return "", fmt.Errorf("%s: object exists: %w", name, ErrConflict)
	case localVersion(cur) != ifVersion:
		return "", fmt.Errorf("%s: %w", name, ErrConflict)
	}

	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("%s: creating directory: %w", name, translateFS(err))
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, tmpPrefix+hex.EncodeToString(rnd[:]))
	if err := writeSynced(tmp, b); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("%s: writing: %w", name, translateFS(err))
	}
	if ifVersion == "" {
		// Create-only, also against a Put that does not take the lock.
		err = fsx.RenameNoReplace(tmp, p)
		if errors.Is(err, fs.ErrExist) {
			_ = os.Remove(tmp)
			return "", fmt.Errorf("%s: object exists: %w", name, ErrConflict)
		}
	} else {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("%s: rename: %w", name, translateFS(err))
	}
	if err := syncDir(dir); err != nil {
		return "", err
	}
	return localVersion(b), nil
}

func localVersion(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// readMax reads the file at p, failing when it holds more than max bytes.
func readMax(p, name string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, translateFS(err))
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, translateFS(err)
	}
	if st.IsDir() { // a name prefix, not an object
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if st.Size() > max {
		return nil, tooLarge(name, max)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(f, max+1)); err != nil {
		return nil, fmt.Errorf("%s: reading: %w", name, translateFS(err))
	}
	if int64(buf.Len()) > max {
		return nil, tooLarge(name, max)
	}
	return buf.Bytes(), nil
}

func writeSynced(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// lock takes the exclusive flock for name. flock locks belong to the open
// file description, so goroutines of one process exclude each other too.
func (l *Local) lock(name string) (unlock func(), err error) {
	dir := filepath.Join(l.root, locksDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", translateFS(err))
	}
	sum := sha256.Sum256([]byte(name))
	p := filepath.Join(dir, hex.EncodeToString(sum[:16]))
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: opening lock file: %w", name, translateFS(err))
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: locking: %w", name, err)
	}
	return func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		_ = f.Close()
	}, nil
}
