package sparse

import (
	"bytes"
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

var zeros = make([]byte, 1<<20)

// IsZero reports whether b is all zero bytes.
func IsZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// DataRanges returns the ranges of [off, off+n) of f that may hold data, in
// order, using SEEK_DATA and SEEK_HOLE; the rest reads as zeros. Where the
// file system cannot tell (or f is not a regular file), the whole range is
// returned.
func DataRanges(f *os.File, off, n int64) [][2]int64 {
	end := off + n
	whole := [][2]int64{{off, end}}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return whole
	}
	fd := int(f.Fd())
	var out [][2]int64
	for pos := off; pos < end; {
		d, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after pos
		}
		if err != nil {
			return whole // not supported here
		}
		if d >= end {
			break
		}
		h, err := unix.Seek(fd, d, unix.SEEK_HOLE)
		if err != nil || h > end {
			h = end
		}
		out = append(out, [2]int64{d, h})
		pos = h
	}
	return out
}
