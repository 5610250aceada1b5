package store

import "io"

// Bytes is an io.ReaderAt over a byte slice that also hands the slice itself
// to stores that can use it: the local store writes it in place, with direct
// I/O when it is page-aligned, instead of copying it through a buffer.
type Bytes []byte

// ReadAt implements io.ReaderAt.
func (b Bytes) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.ErrUnexpectedEOF
	}
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
