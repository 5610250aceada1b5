package uploader

import (
	"fmt"
	"io"

	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/sparse"
	"github.com/cofferhq/coffer/uploader/source"
)

// regionScanner reads one region of a source block by block. It hashes every
// block for the disk digest, finds all-zero blocks, and serves the bytes of
// each run of non-zero blocks as an io.Reader that ends (io.EOF) where the run
// ends, so a chunker can be reset at every run. It reads straight into the
// reader's buffer (the chunker's), so data is copied from the page cache once.
type regionScanner struct {
	src     source.Source
	off     int64 // region start on the disk
	length  int64 // region length
	nblocks int

	hasData []bool // block may hold data (overlaps a data range)
	wasRead []bool // block was read at least once (readBytes counts it once)
	blocks  []manifest.BlockSum

	probe      []byte // the block nextRun looked at
	probeBlock int    // its index, or -1

	pos       int64 // next byte (region-relative) to serve; block-aligned
	readBytes int64
}

func newRegionScanner() *regionScanner {
	return &regionScanner{probe: make([]byte, manifest.BlockSize), probeBlock: -1}
}

// reset prepares the scanner for a region.
func (s *regionScanner) reset(src source.Source, off, length int64) error {
	s.src, s.off, s.length = src, off, length
	s.nblocks = int((length + manifest.BlockSize - 1) / manifest.BlockSize)
	s.hasData = resize(s.hasData, s.nblocks)
	s.wasRead = resize(s.wasRead, s.nblocks)
	clear(s.wasRead)
	s.blocks = resizeHashes(s.blocks, s.nblocks)
	clear(s.hasData)
	for b := range s.blocks {
		s.blocks[b] = manifest.ZeroBlockHash(s.blockLen(b))
	}
	s.pos, s.readBytes, s.probeBlock = 0, 0, -1
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

// readAt reads len(p) bytes of the region at region offset off.
func (s *regionScanner) readAt(p []byte, off int64) error {
	n, err := s.src.ReadAt(p, s.off+off)
	s.countRead(off, int64(n))
	if err == io.EOF && n == len(p) {
		err = nil
	}
	if err == io.EOF {
		return source.Errorf(s.src.Path(), "reading %s at %d: %w: it ends before the %d bytes it had when the backup started (%w); no snapshot was saved",
			s.src.Path(), s.off+off, source.ErrSourceChanged, s.src.Size(), io.ErrUnexpectedEOF)
	}
	if err != nil {
		return source.Errorf(s.src.Path(), "reading %s at %d: %w", s.src.Path(), s.off+off, err)
	}
	return nil
}

// countRead adds the blocks in n bytes read at region offset off that were
// not read before to readBytes: a block after a run's end is read with the
// run and again when the next run is looked for, but counts once, so what
// a backup reports as read never exceeds the disk.
func (s *regionScanner) countRead(off, n int64) {
	if n <= 0 {
		return
	}
	for b := off / manifest.BlockSize; b <= (off+n-1)/manifest.BlockSize && b < int64(s.nblocks); b++ {
		if !s.wasRead[b] {
			s.wasRead[b] = true
			s.readBytes += int64(s.blockLen(int(b)))
		}
	}
}

// nextRun moves to the first non-zero block at or after the current
// position and reports whether there is one. Holes are not read.
func (s *regionScanner) nextRun() (bool, error) {
	for b := int((s.pos + manifest.BlockSize - 1) / manifest.BlockSize); b < s.nblocks; b++ {
		if !s.hasData[b] {
			continue
		}
		blk := s.probe[:s.blockLen(b)]
		if s.probeBlock != b {
			if err := s.readAt(blk, int64(b)*manifest.BlockSize); err != nil {
				return false, err
			}
			s.probeBlock = b
		}
		if !sparse.IsZero(blk) {
			s.pos = int64(b) * manifest.BlockSize
			return true, nil
		}
	}
	s.pos = s.length
	return false, nil
}

// Read serves the bytes of the current run, whole blocks at a time, read
// straight into p; it stops before the first zero block or hole.
func (s *regionScanner) Read(p []byte) (int, error) {
	if s.pos >= s.length {
		return 0, io.EOF
	}
	b := int(s.pos / manifest.BlockSize)
	if s.pos%manifest.BlockSize != 0 || len(p) < s.blockLen(b) {
		return 0, fmt.Errorf("internal error: region reader asked for %d bytes at %d", len(p), s.pos)
	}
	// The contiguous data blocks that fit in p.
	k, size := 0, 0
	for b+k < s.nblocks && s.hasData[b+k] && size+s.blockLen(b+k) <= len(p) {
		size += s.blockLen(b + k)
		k++
	}
	if k == 0 {
		return 0, io.EOF // a hole ends the run
	}
	from := 0
	if s.probeBlock == b {
		// nextRun read this block already.
		from = copy(p, s.probe[:s.blockLen(b)])
		s.probeBlock = -1
	}
	if from < size {
		if err := s.readAt(p[from:size], s.pos+int64(from)); err != nil {
			return 0, err
		}
	}
	served := 0
	for i := 0; i < k; i++ {
		blk := p[served : served+s.blockLen(b+i)]
		if sparse.IsZero(blk) {
			break // a zero block ends the run; nextRun skips it
		}
		s.blocks[b+i] = manifest.BlockHash(blk)
		served += len(blk)
	}
	if served == 0 {
		return 0, io.EOF
	}
	s.pos += int64(served)
	return served, nil
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
