package source

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cofferhq/coffer/internal/sparse"
)

// Source is a disk to back up.
type Source interface {
	io.ReaderAt
	// Size is the disk's size in bytes.
	Size() int64
	// DataRanges returns the ranges of [off, off+n) that may hold data, in
	// order; the rest is known to read as zeros (holes of a sparse file).
	DataRanges(off, n int64) ([][2]int64, error)
	// Path names the source in messages and snapshots.
	Path() string
	// Recheck reports a *SourceError when the source is no longer what
	// was read (its size changed); a backup calls it after its last read.
	Recheck() error
	Close() error
}

// ErrSourceChanged is wrapped by the SourceError of a disk whose size
// changed while it was backed up.
var ErrSourceChanged = errors.New("the disk changed size while it was backed up")

// SourceError is a failure of one disk's source: it could not be opened or
// read, or it changed while it was read. That disk's backup failed and no
// snapshot of it was saved; a run over several disks reports it for that
// disk and goes on with the others.
type SourceError struct {
	Path string
	Err  error
}

func (e *SourceError) Error() string { return e.Err.Error() }
func (e *SourceError) Unwrap() error { return e.Err }

// Errorf returns a *SourceError for the disk at path.
func Errorf(path, format string, a ...any) error {
	return &SourceError{Path: path, Err: fmt.Errorf(format, a...)}
}

// ImageSource is a raw disk image file or a block device.
type ImageSource struct {
	f    *os.File
	size int64
}

// OpenImage opens a raw image file or block device for reading. Anything
// else (a character device such as /dev/null, a directory, a pipe) and an
// empty disk are refused: a backup of them would "succeed" with nothing.
func OpenImage(path string) (*ImageSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &SourceError{Path: path, Err: fmt.Errorf("opening the disk image: %w", err)}
	}
	size, err := sizeOf(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if size == 0 {
		f.Close()
		return nil, Errorf(path, "%s is empty (0 bytes): there is nothing to back up; check the path (is the disk attached?)", path)
	}
	return &ImageSource{f: f, size: size}, nil
}

// sizeOf returns the size of an open regular file or block device.
func sizeOf(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, &SourceError{Path: f.Name(), Err: err}
	}
	m := st.Mode()
	switch {
	case m.IsRegular():
		return st.Size(), nil
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		// A block device's size is where its end is.
		size, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return 0, Errorf(f.Name(), "finding the size of %s: %w", f.Name(), err)
		}
		return size, nil
	case m&os.ModeCharDevice != 0:
		return 0, Errorf(f.Name(), "%s is a character device, not a disk: back up a raw image file or a block device", f.Name())
	}
	return 0, Errorf(f.Name(), "%s is neither a regular file nor a block device", f.Name())
}

// Recheck implements Source: the disk's size must be what it was when it
// was opened.
func (s *ImageSource) Recheck() error {
	size, err := sizeOf(s.f)
	if err != nil {
		return err
	}
	if size != s.size {
		return &SourceError{Path: s.f.Name(), Err: fmt.Errorf("%w: %s was %d bytes when the backup started and is %d now; "+
			"no snapshot was saved: back up a snapshot of the disk (or stop what writes to it) and run again", ErrSourceChanged, s.f.Name(), s.size, size)}
	}
	return nil
}

// ReadAt implements io.ReaderAt.
func (s *ImageSource) ReadAt(p []byte, off int64) (int, error) { return s.f.ReadAt(p, off) }

// Size implements Source.
func (s *ImageSource) Size() int64 { return s.size }

// Path implements Source.
func (s *ImageSource) Path() string { return s.f.Name() }

// Close implements Source.
func (s *ImageSource) Close() error { return s.f.Close() }

// DataRanges implements Source with SEEK_DATA and SEEK_HOLE, so the holes of
// a sparse image are never read.
func (s *ImageSource) DataRanges(off, n int64) ([][2]int64, error) {
	return sparse.DataRanges(s.f, off, n), nil
}
