package xenapi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Extent is a byte range of a disk: Len bytes from Off.
type Extent struct {
	Off, Len int64
}

// End is the offset just past the extent.
func (e Extent) End() int64 { return e.Off + e.Len }

// ChunkHeaderSize is the size of one header of xapi's sparse ("chunked")
// import protocol: offset u64 and length u32, little-endian.
const ChunkHeaderSize = 12

// MaxChunk is the most data bytes ImportRawVDI puts behind one header.
const MaxChunk = 4 << 20

// CheckExtents checks that data lists extents of a disk of size bytes:
// each non-empty and inside the disk, sorted, none overlapping.
func CheckExtents(data []Extent, size int64) error {
	if size <= 0 {
		return fmt.Errorf("the disk size %d is not positive", size)
	}
	var end int64
	for i, e := range data {
		switch {
		case e.Off < 0 || e.Len <= 0:
			return fmt.Errorf("extent %d (offset %d, length %d) is empty or negative", i, e.Off, e.Len)
		case e.Len > size || e.Off > size-e.Len:
			return fmt.Errorf("extent %d (offset %d, length %d) ends past the disk's %d bytes", i, e.Off, e.Len, size)
		case e.Off < end:
			return fmt.Errorf("extent %d (offset %d) overlaps or precedes the one before it (which ends at %d): sort and merge the extents", i, e.Off, end)
		}
		end = e.End()
	}
	return nil
}

// ChunkedLength is the length of the sparse-protocol body that carries
// data (checked with CheckExtents): a header per chunk of at most MaxChunk
// bytes, the data, and the end marker.
func ChunkedLength(data []Extent) int64 {
	n := int64(ChunkHeaderSize)
	for _, e := range data {
		chunks := (e.Len + MaxChunk - 1) / MaxChunk
		n += chunks*ChunkHeaderSize + e.Len
	}
	return n
}

// chunkedBody streams the sparse-protocol body of data read from src:
// for each chunk its header then its bytes, then the {0,0} end marker. It
// reads src as it goes and never holds more than the caller's buffer.
type chunkedBody struct {
	src   io.ReaderAt
	data  []Extent
	i     int    // extent being sent
	done  int64  // bytes of data[i] already put behind headers
	hdr   []byte // header bytes not yet sent
	left  int64  // data bytes of the current chunk not yet sent
	off   int64  // disk offset of the next data byte
	ended bool   // the end marker is queued
	buf   [ChunkHeaderSize]byte
}

func (b *chunkedBody) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		switch {
		case len(b.hdr) > 0:
			k := copy(p[n:], b.hdr)
			b.hdr = b.hdr[k:]
			n += k
		case b.left > 0:
			want := int(min(int64(len(p)-n), b.left))
			k, err := b.src.ReadAt(p[n:n+want], b.off)
			n += k
			b.off += int64(k)
			b.left -= int64(k)
			if k < want {
				if err == nil || errors.Is(err, io.EOF) {
					err = fmt.Errorf("the disk ended at byte %d, inside a data extent", b.off)
				}
				return n, fmt.Errorf("reading the disk at byte %d: %w", b.off, err)
			}
		case !b.next():
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		}
	}
	return n, nil
}

// next queues the next chunk's header, or the end marker; false when the
// end marker has been queued already.
func (b *chunkedBody) next() bool {
	if b.ended {
		return false
	}
	var off, l int64
	if b.i < len(b.data) {
		e := b.data[b.i]
		off, l = e.Off+b.done, min(e.Len-b.done, MaxChunk)
		b.done += l
		if b.done == e.Len {
			b.i, b.done = b.i+1, 0
		}
	} else {
		b.ended = true
	}
	binary.LittleEndian.PutUint64(b.buf[0:8], uint64(off))
	binary.LittleEndian.PutUint32(b.buf[8:12], uint32(l))
	b.hdr, b.off, b.left = b.buf[:], off, l
	return true
}
