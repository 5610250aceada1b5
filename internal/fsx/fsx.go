package fsx

import (
	"errors"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// RenameNoReplace moves tmp to p unless p exists, when it returns an
// error that is fs.ErrExist.
func RenameNoReplace(tmp, p string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, p, unix.RENAME_NOREPLACE)
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
	if err := os.Link(tmp, p); err == nil {
		return os.Remove(tmp)
	} else if errors.Is(err, fs.ErrExist) {
		return fs.ErrExist
	}
	// No hard links either (FAT, exFAT): check, then rename. The window is
	// harmless for Coffer, whose objects are named by their content.
	if _, err := os.Lstat(p); err == nil {
		return fs.ErrExist
	}
	return os.Rename(tmp, p)
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
