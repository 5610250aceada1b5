package uploader

import (
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
	Close() error
}

// ImageSource is a raw disk image file or a block device.
type ImageSource struct {
	f    *os.File
	size int64
}

// OpenImage opens a raw image file or block device for reading.
func OpenImage(path string) (*ImageSource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the disk image: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	var size int64
	switch {
	case st.Mode().IsRegular():
		size = st.Size()
	case st.Mode()&os.ModeDevice != 0:
		// A block device's size is where its end is.
		size, err = f.Seek(0, io.SeekEnd)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("finding the size of %s: %w", path, err)
		}
	default:
		f.Close()
		return nil, fmt.Errorf("%s is neither a regular file nor a block device", path)
	}
	return &ImageSource{f: f, size: size}, nil
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
