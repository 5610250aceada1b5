package uploader

import (
	"fmt"
	"io"

	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/sparse"
)

// batchBlocks is how many blocks the scanner reads at once (1 MiB).
const batchBlocks = 16

// regionScanner reads one region of a source block by block. It hashes every
// block for the disk digest, finds all-zero blocks, and serves the bytes of
// each run of non-zero blocks as an io.Reader that ends (io.EOF) where the run
// ends, so a chunker can be reset at every run.
type regionScanner struct {
	src     Source
	off     int64 // region start on the disk
	length  int64 // region length
	nblocks int

	hasData []bool // block may hold data (overlaps a data range)
	blocks  []manifest.BlockSum

	buf       []byte // loaded blocks
	bufFirst  int    // index of the first loaded block
	bufBlocks int    // number of loaded blocks
	zero      [batchBlocks]bool

	pos       int64 // next byte (region-relative) the reader serves
	readBytes int64
}

func newRegionScanner() *regionScanner {
	return &regionScanner{buf: make([]byte, batchBlocks*manifest.BlockSize)}
}

// reset prepares the scanner for a region.
func (s *regionScanner) reset(src Source, off, length int64) error {
	s.src, s.off, s.length = src, off, length
	s.nblocks = int((length + manifest.BlockSize - 1) / manifest.BlockSize)
	s.hasData = resize(s.hasData, s.nblocks)
	s.blocks = resizeHashes(s.blocks, s.nblocks)
	clear(s.hasData)
	for b := range s.blocks {
		s.blocks[b] = manifest.ZeroBlockHash(s.blockLen(b))
	}
	s.bufFirst, s.bufBlocks, s.pos, s.readBytes = 0, 0, 0, 0
	ranges, err := src.DataRanges(off, length)
	if err != nil {
		return err
	}
	for _, r := range ranges {
		first := int((r[0] - off) / manifest.BlockSize)
		last := int((r[1] - off - 1) / manifest.BlockSize)
		for b := max(first, 0); b <= last && b < s.nblocks; b++ {
			s.hasData[b] = true
		}
	}
	return nil
}

func (s *regionScanner) blockLen(b int) int {
	return int(min(manifest.BlockSize, s.length-int64(b)*manifest.BlockSize))
}

func (s *regionScanner) loaded(b int) bool { return b >= s.bufFirst && b < s.bufFirst+s.bufBlocks }

// load reads up to batchBlocks contiguous data blocks starting at block b,
// hashes them and marks the all-zero ones.
func (s *regionScanner) load(b int) error {
	n := 0
	for n < batchBlocks && b+n < s.nblocks && s.hasData[b+n] {
		n++
	}
	start := int64(b) * manifest.BlockSize
	length := min(int64(n)*manifest.BlockSize, s.length-start)
	buf := s.buf[:length]
	if _, err := s.src.ReadAt(buf, s.off+start); err != nil && !(err == io.EOF && len(buf) == 0) {
		if err == io.EOF {
			return fmt.Errorf("reading %s at %d: the disk is shorter than its size (%w)", s.src.Path(), s.off+start, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("reading %s at %d: %w", s.src.Path(), s.off+start, err)
	}
	s.readBytes += length
	s.bufFirst, s.bufBlocks = b, n
	for i := 0; i < n; i++ {
		blk := buf[i*manifest.BlockSize : min(int64(i+1)*manifest.BlockSize, length)]
		s.zero[i] = sparse.IsZero(blk)
		if !s.zero[i] {
			s.blocks[b+i] = manifest.BlockHash(blk)
		}
	}
	return nil
}

// nextRun moves to the first non-zero block at or after the current
// position and reports whether there is one.
func (s *regionScanner) nextRun() (bool, error) {
	b := int((s.pos + manifest.BlockSize - 1) / manifest.BlockSize)
	for ; b < s.nblocks; b++ {
		if !s.hasData[b] {
			continue
		}
		if !s.loaded(b) {
			if err := s.load(b); err != nil {
				return false, err
			}
		}
		if !s.zero[b-s.bufFirst] {
			s.pos = int64(b) * manifest.BlockSize
			return true, nil
		}
	}
	s.pos = s.length
	return false, nil
}

// Read serves the bytes of the current run.
func (s *regionScanner) Read(p []byte) (int, error) {
	total := 0
	for len(p) > 0 && s.pos < s.length {
		b := int(s.pos / manifest.BlockSize)
		if !s.hasData[b] {
			break
		}
		if !s.loaded(b) {
			if err := s.load(b); err != nil {
				return total, err
			}
		}
		// Serve the loaded non-zero blocks from pos on.
		end := b
		for end < s.bufFirst+s.bufBlocks && !s.zero[end-s.bufFirst] {
			end++
		}
		if end == b {
			break // a zero block ends the run
		}
		endByte := min(int64(end)*manifest.BlockSize, s.length)
		from := s.pos - int64(s.bufFirst)*manifest.BlockSize
		n := copy(p, s.buf[from:endByte-int64(s.bufFirst)*manifest.BlockSize])
		p = p[n:]
		s.pos += int64(n)
		total += n
	}
	if total == 0 {
		return 0, io.EOF
	}
	return total, nil
}

func resize(b []bool, n int) []bool {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]bool, n)
}

func resizeHashes(b []manifest.BlockSum, n int) []manifest.BlockSum {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]manifest.BlockSum, n)
}
