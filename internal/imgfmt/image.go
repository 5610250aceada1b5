package imgfmt

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Image is a disk image being restored into: WriteAt and ReadAt take guest
// offsets and are safe to call concurrently on disjoint ranges; Close waits
// for none of them, so call it after the last. *VHD and *QCOW2 implement it.
type Image interface {
	// WriteAt writes p at guest offset off. The range must lie inside the
	// data extents the image was created with; anything else is an error
	// and nothing is written.
	WriteAt(p []byte, off int64) (int, error)
	// ReadAt reads what was written, zeros where nothing was; past Size it
	// returns io.EOF.
	ReadAt(p []byte, off int64) (int, error)
	// Size is the virtual size: the disk's size rounded up to a sector
	// (VirtualSize).
	Size() int64
	// Allocate reserves file space under guest range [off, off+n) before
	// it is written (fallocate), so a full file system fails at once and
	// writes land in place; unallocated parts of the range are skipped.
	Allocate(off, n int64) error
	// Sync flushes the file to stable storage.
	Sync() error
	// Close writes what the format writes last and closes the file. It
	// does not sync: call Sync first when the image must survive a crash.
	Close() error
}

// VirtualSize is the size an image holds for a disk of size bytes: size
// rounded up to a whole sector. A caller restoring a disk whose size is not
// a sector multiple reports the difference.
func VirtualSize(size int64) int64 { return roundUp(size, SectorSize) }

// ErrOutsideExtents is wrapped by a WriteAt outside the image's data extents.
var ErrOutsideExtents = errors.New("write outside the disk's data extents")

// mapped is what both formats share once their layout is fixed: the file,
// the data extents, and the runs that map allocated units to the file.
type mapped struct {
	f      *os.File
	name   string
	size   int64 // virtual size
	exts   []Extent
	runs   []unitRun
	unit   int64 // guest bytes per unit
	stride int64 // file bytes from one unit of a run to the next
	skip   int64 // file bytes before a unit's data (the VHD bitmap)

	closeOnce sync.Once
	closeErr  error
	finish    func() error // written last, by Close
}

// segment maps guest offset off to its file offset and the number of bytes
// from there that are contiguous in the file (at most n). ok is false in a
// stretch of unallocated units, which reads as zeros; l then reaches to the
// next allocated unit.
func (m *mapped) segment(off, n int64) (fileOff, l int64, ok bool) {
	u, within := off/m.unit, off%m.unit
	i, ok := findRun(m.runs, u)
	if !ok {
		if i == len(m.runs) {
			return 0, n, false
		}
		return 0, min(n, m.runs[i].first*m.unit-off), false
	}
	r := m.runs[i]
	fileOff = r.base + (u-r.first)*m.stride + m.skip + within
	limit := m.unit - within
	if m.stride == m.unit {
		limit = (r.first+r.n)*m.unit - off
	}
	return fileOff, min(n, limit), true
}

// WriteAt implements Image.
func (m *mapped) WriteAt(p []byte, off int64) (int, error) {
	if len(p) == 0 && off >= 0 && off <= m.size {
		return 0, nil
	}
	if off < 0 || !covers(m.exts, off, int64(len(p))) {
		return 0, fmt.Errorf("imgfmt: %s: %d bytes at guest offset %d: %w (the image was laid out without room for them)", m.name, len(p), off, ErrOutsideExtents)
	}
	done := 0
	for done < len(p) {
		fo, l, ok := m.segment(off+int64(done), int64(len(p)-done))
		if !ok {
			return done, fmt.Errorf("imgfmt: %s: guest offset %d has no block allocated (a bug in the layout)", m.name, off+int64(done))
		}
		n, err := m.f.WriteAt(p[done:done+int(l)], fo)
		done += n
		if err != nil {
			return done, fmt.Errorf("imgfmt: writing %s: %w", m.name, err)
		}
	}
	return done, nil
}

// ReadAt implements Image.
func (m *mapped) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("imgfmt: %s: read at negative offset %d", m.name, off)
	}
	want := p
	if off >= m.size {
		return 0, io.EOF
	}
	if int64(len(p)) > m.size-off {
		want = p[:m.size-off]
	}
	done := 0
	for done < len(want) {
		fo, l, ok := m.segment(off+int64(done), int64(len(want)-done))
		if !ok {
			clear(want[done : done+int(l)])
			done += int(l)
			continue
		}
		n, err := m.f.ReadAt(want[done:done+int(l)], fo)
		done += n
		if err != nil {
			return done, fmt.Errorf("imgfmt: reading %s: %w", m.name, err)
		}
	}
	if done < len(p) {
		return done, io.EOF
	}
	return done, nil
}

// Allocate implements Image.
func (m *mapped) Allocate(off, n int64) error {
	if off < 0 || n < 0 || off > m.size || n > m.size-off {
		return fmt.Errorf("imgfmt: %s: cannot allocate %d bytes at guest offset %d of a %d-byte disk", m.name, n, off, m.size)
	}
	for done := int64(0); done < n; {
		fo, l, ok := m.segment(off+done, n-done)
		if ok {
			if supported, err := m.fallocate(fo, l); err != nil || !supported {
				return err
			}
		}
		done += l
	}
	return nil
}

// fallocate reserves l bytes of the file at fo; supported is false (and
// err nil) when the file system cannot allocate ahead, so writes allocate.
func (m *mapped) fallocate(fo, l int64) (supported bool, err error) {
	err = unix.Fallocate(int(m.f.Fd()), 0, fo, l)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
		return false, nil
	case errors.Is(err, unix.ENOSPC):
		return false, fmt.Errorf("imgfmt: allocating %d bytes of %s: %w: free space on its file system, or restore elsewhere", l, m.name, err)
	}
	return false, fmt.Errorf("imgfmt: allocating %d bytes of %s: %w", l, m.name, err)
}

// Size implements Image.
func (m *mapped) Size() int64 { return m.size }

// Sync implements Image.
func (m *mapped) Sync() error {
	if err := m.f.Sync(); err != nil {
		return fmt.Errorf("imgfmt: syncing %s: %w", m.name, err)
	}
	return nil
}

// Close implements Image. Closing twice returns the first result.
func (m *mapped) Close() error {
	m.closeOnce.Do(func() {
		if m.finish != nil {
			m.closeErr = m.finish()
		}
		if err := m.f.Close(); err != nil && m.closeErr == nil {
			m.closeErr = fmt.Errorf("imgfmt: closing %s: %w", m.name, err)
		}
	})
	return m.closeErr
}

// writeAll writes b at file offset off of the image being created.
func (m *mapped) writeAll(b []byte, off int64, what string) error {
	if _, err := m.f.WriteAt(b, off); err != nil {
		return fmt.Errorf("imgfmt: writing the %s of %s: %w", what, m.name, err)
	}
	return nil
}

// openNew creates path for a new image; it must not exist.
func openNew(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("imgfmt: creating the image: %w (choose a path that does not exist yet)", err)
	}
	return f, nil
}

// prepare checks that f is an empty regular file the image may own and
// returns the extents normalized.
func prepare(f *os.File, size int64, data []Extent) ([]Extent, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("imgfmt: %s: %w", f.Name(), err)
	}
	if !st.Mode().IsRegular() || st.Size() != 0 {
		return nil, fmt.Errorf("imgfmt: %s must be an empty regular file to hold a new image", f.Name())
	}
	exts, err := normalize(size, data)
	if err != nil {
		return nil, fmt.Errorf("imgfmt: %s: %w", f.Name(), err)
	}
	return exts, nil
}
