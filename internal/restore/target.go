package restore

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Target is what a restore writes a disk into: a sparse file, a block
// device, or an image format laid out over one. Offsets are the disk's.
type Target interface {
	// WriteAt writes chunk plaintext at disk offset off. Concurrent calls
	// write disjoint ranges.
	WriteAt(p []byte, off int64) (int, error)
	// ReadAt reads back what was written, zeros where nothing was: the
	// restore verifies its output through it.
	ReadAt(p []byte, off int64) (int, error)
	// Prepare is called once per window of regions, [from, to) of the
	// disk, before anything is written into it, with the ranges chunks
	// will be written to, in order and merged.
	Prepare(data []Range, from, to int64) error
	// InPlace reports that the target held other data before (a block
	// device): Prepare zeroes what no chunk covers, and every block is read
	// back to verify it.
	InPlace() bool
	// Name names the target in errors.
	Name() string
}

// Range is a byte range of a disk.
type Range struct{ Off, Len int64 }

// fileTarget is a new sparse file: only the chunks' ranges are allocated,
// holes stay holes.
type fileTarget struct{ f *os.File }

func (t fileTarget) WriteAt(p []byte, off int64) (int, error) { return t.f.WriteAt(p, off) }
func (t fileTarget) ReadAt(p []byte, off int64) (int, error)  { return t.f.ReadAt(p, off) }
func (t fileTarget) InPlace() bool                            { return false }
func (t fileTarget) Name() string                             { return t.f.Name() }

// Prepare reserves the file's blocks under the window's chunks
// (fallocate), before any is written. Writing into allocated blocks is
// cheaper and steadier than letting the file system allocate as pages are
// written back (delayed allocation). A file system short of space says so
// now, before the restore has written anything; one that cannot allocate
// ahead (EOPNOTSUPP) is written as before.
func (t fileTarget) Prepare(data []Range, _, _ int64) error {
	for _, r := range data {
		err := unix.Fallocate(int(t.f.Fd()), 0, r.Off, r.Len)
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOSPC):
			return fmt.Errorf("allocating the output at %d (%d bytes): %w: the restore needs room for every chunk of the disk", r.Off, r.Len, err)
		case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
			return nil // the file system cannot allocate ahead; writes allocate
		default:
			return fmt.Errorf("allocating the output at %d: %w", r.Off, err)
		}
	}
	return nil
}

// deviceTarget is a block device written in place: what no chunk covers is
// zeroed, since the device may hold older data there.
type deviceTarget struct{ f *os.File }

func (t deviceTarget) WriteAt(p []byte, off int64) (int, error) { return t.f.WriteAt(p, off) }
func (t deviceTarget) ReadAt(p []byte, off int64) (int, error)  { return t.f.ReadAt(p, off) }
func (t deviceTarget) InPlace() bool                            { return true }
func (t deviceTarget) Name() string                             { return t.f.Name() }

// Prepare zeroes the parts of [from, to) that no data range covers.
func (t deviceTarget) Prepare(data []Range, from, to int64) error {
	pos := from
	for _, r := range data {
		if r.Off > pos {
			if err := zeroRange(t.f, pos, r.Off-pos); err != nil {
				return err
			}
		}
		pos = max(pos, r.Off+r.Len)
	}
	if to > pos {
		return zeroRange(t.f, pos, to-pos)
	}
	return nil
}
