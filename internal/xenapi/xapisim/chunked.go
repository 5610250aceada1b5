package xapisim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
)

// chunkHeader is the size of a header of xapi's sparse import protocol:
// offset u64 and length u32, little-endian.
const chunkHeader = 12

// span is a byte range a chunk wrote.
type span struct{ off, n int64 }

// errChunked marks a body that breaks the sparse protocol.
var errChunked = errors.New("chunked import")

// parseChunked reads a sparse-protocol body of length bytes (the
// Content-Length) for a VDI of size bytes: headers {offset, length} each
// followed by length bytes, ended by {0, 0}, which must be the body's last
// bytes. put gets the data, in pieces of at most 64 KiB. It returns the
// spans written; a body that breaks the protocol is an error wrapping
// errChunked.
func parseChunked(r io.Reader, length, size int64, put func(off int64, p []byte) error) ([]span, error) {
	var hdr [chunkHeader]byte
	buf := make([]byte, BlockSize)
	var spans []span
	for pos := int64(0); ; {
		if length-pos < chunkHeader {
			return nil, fmt.Errorf("%w: the body (Content-Length %d) ends at byte %d without the end marker {0,0}", errChunked, length, pos)
		}
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, fmt.Errorf("%w: the body broke off in the header at byte %d: %v", errChunked, pos, err)
		}
		pos += chunkHeader
		off, n := binary.LittleEndian.Uint64(hdr[:8]), int64(binary.LittleEndian.Uint32(hdr[8:]))
		if n == 0 {
			return spans, endMarker(off, pos, length)
		}
		switch {
		case off > uint64(size) || n > size-int64(off):
			return nil, fmt.Errorf("%w: the chunk at offset %d (%d bytes) ends past the VDI's %d bytes", errChunked, off, n, size)
		case n > length-pos:
			return nil, fmt.Errorf("%w: the chunk at offset %d (%d bytes) runs past the Content-Length %d", errChunked, off, n, length)
		}
		if err := copyChunk(r, buf, int64(off), n, put); err != nil {
			return nil, err
		}
		pos += n
		spans = append(spans, span{int64(off), n})
	}
}

// endMarker checks the {0, 0} header read at pos-12.
func endMarker(off uint64, pos, length int64) error {
	switch {
	case off != 0:
		return fmt.Errorf("%w: a chunk of length 0 at offset %d: only {0,0} ends the stream", errChunked, off)
	case pos != length:
		return fmt.Errorf("%w: the end marker ends at byte %d, but the Content-Length is %d", errChunked, pos, length)
	}
	return nil
}

func copyChunk(r io.Reader, buf []byte, off, n int64, put func(int64, []byte) error) error {
	for done := int64(0); done < n; {
		k := min(int64(len(buf)), n-done)
		if _, err := io.ReadFull(r, buf[:k]); err != nil {
			return fmt.Errorf("%w: the body broke off inside the chunk at offset %d: %v", errChunked, off, err)
		}
		if err := put(off+done, buf[:k]); err != nil {
			return err
		}
		done += k
	}
	return nil
}

// importChunked is import_raw_vdi with the chunked flag: the body is
// staged in a sparse file and checked whole before anything reaches the
// VDI, so a refused upload leaves the VDI unchanged. With fail set (the
// import-fail switch) it stops half-way through the body and refuses.
func (h *Handler) importChunked(v *VDI, r *http.Request, fail bool, res *importResult) error {
	staged, err := os.CreateTemp(h.Sim.Dir, "staging-*.img")
	if err != nil {
		return err
	}
	defer os.Remove(staged.Name())
	defer staged.Close()
	body := io.Reader(r.Body)
	if fail {
		body = io.LimitReader(r.Body, r.ContentLength/2)
	}
	spans, err := parseChunked(body, r.ContentLength, v.VirtualSize, func(off int64, p []byte) error {
		_, err := staged.WriteAt(p, off)
		return err
	})
	switch {
	case fail:
		res.status, res.code, res.msg = http.StatusInternalServerError, errVDIIO, "500 VDI_IO_ERROR: Device I/O errors (xapisim switch import-fail) on VDI "+v.UUID
		return nil
	case errors.Is(err, errChunked):
		res.status, res.code, res.msg = http.StatusBadRequest, errImport, "400 "+err.Error()
		return nil
	case err != nil:
		return err
	}
	return h.Sim.applyStaged(v, staged, spans)
}

// applyStaged writes the staged spans onto v, block by block; the parts of
// a block no span covers keep what the disk held.
func (s *Sim) applyStaged(v *VDI, staged io.ReaderAt, spans []span) error {
	touched := map[int64][]span{}
	for _, sp := range spans {
		for b := sp.off / BlockSize; b <= (sp.off+sp.n-1)/BlockSize; b++ {
			touched[b] = append(touched[b], sp)
		}
	}
	return s.writeBlocks(v, blocksOf(v.VirtualSize), func(b int64, data []byte, cur *chainReader) (bool, error) {
		if touched[b] == nil {
			return false, nil
		}
		start := b * BlockSize
		if _, err := cur.ReadAt(data, start); err != nil && !errors.Is(err, io.EOF) {
			return false, err
		}
		for _, sp := range touched[b] {
			lo, hi := max(sp.off, start), min(sp.off+sp.n, start+int64(len(data)))
			if _, err := staged.ReadAt(data[lo-start:hi-start], lo); err != nil && !errors.Is(err, io.EOF) {
				return false, err
			}
		}
		return true, nil
	})
}

// stagingFiles lists leftover staging files (none after any import).
func (s *Sim) stagingFiles() ([]string, error) {
	return filepath.Glob(filepath.Join(s.Dir, "staging-*.img"))
}
