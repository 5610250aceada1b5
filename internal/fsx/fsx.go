package fsx

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// RenameNoReplace moves tmp to p unless p exists, when it returns an
// error that is fs.ErrExist.
func RenameNoReplace(tmp, p string) error {
	return RenameatNoReplace(unix.AT_FDCWD, tmp, p)
}

// RenameatNoReplace is RenameNoReplace for two names in the directory
// dirfd (or relative to the working directory with unix.AT_FDCWD), so that
// no path is resolved again after the caller checked the directory.
func RenameatNoReplace(dirfd int, tmp, p string) error {
	err := unix.Renameat2(dirfd, tmp, dirfd, p, unix.RENAME_NOREPLACE)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EEXIST) {
		return fs.ErrExist
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.ENOTSUP) {
		return err
	}
	// The file system lacks RENAME_NOREPLACE: a hard link is create-only too.
	if err := unix.Linkat(dirfd, tmp, dirfd, p, 0); err == nil {
		return unix.Unlinkat(dirfd, tmp, 0)
	} else if errors.Is(err, unix.EEXIST) {
		return fs.ErrExist
	}
	// No hard links either (FAT, exFAT): check, then rename. The window is
	// harmless for Coffer's callers, whose files are named by their content
	// or are their own temporary files.
	var st unix.Stat_t
	if unix.Fstatat(dirfd, p, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		return fs.ErrExist
	}
	return unix.Renameat(dirfd, tmp, dirfd, p)
}

// SyncDir fsyncs the directory dir, so that a rename or a new entry in it
// survives a crash. File systems that cannot sync a directory (EINVAL) are
// taken as done.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// WriteFileAtomic replaces dir/name with b: written to a temporary file in
// dir, synced, renamed over the old file, and the directory synced, so a
// crash leaves the old file or the new one, never a part.
func WriteFileAtomic(dir, name string, b []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return SyncDir(dir)
}
