package uploader

import (
	"errors"
	"io"

	"github.com/restic/chunker"

	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
)

// cutter cuts one run of non-zero blocks, read from rd, into chunks; a
// full read and a changed-block backup of the same disk use the same one,
// so that they cut alike. Next returns io.EOF after the run's last chunk.
type cutter interface {
	Reset(rd io.Reader)
	Next(buf []byte) (chunker.Chunk, error)
	// MinSize is the shortest chunk it cuts before the run ends, MaxSize
	// the longest it cuts.
	MinSize() int64
	MaxSize() int64
}

// newCutter returns the cutter of a chunking.
func newCutter(r *repo.Repo, c manifest.Chunking) cutter {
	if c == manifest.ChunkingBlocks {
		return &blockCutter{}
	}
	cp := r.Config().Chunker
	return &contentCutter{
		ch:  chunker.NewWithBoundaries(nil, r.Polynomial(), cp.Min, cp.Max),
		pol: r.Polynomial(),
		cp:  cp,
	}
}

// contentCutter is the repository's content-defined chunker.
type contentCutter struct {
	ch  *chunker.Chunker
	pol chunker.Pol
	cp  repo.ChunkerParams
}

func (c *contentCutter) Reset(rd io.Reader) {
	c.ch.ResetWithBoundaries(rd, c.pol, c.cp.Min, c.cp.Max)
	c.ch.SetAverageBits(c.cp.AvgBits)
}

func (c *contentCutter) Next(buf []byte) (chunker.Chunk, error) { return c.ch.Next(buf) }
func (c *contentCutter) MinSize() int64                         { return int64(c.cp.Min) }
func (c *contentCutter) MaxSize() int64                         { return int64(c.cp.Max) }

// blockCutter makes each block one chunk. Runs start on block boundaries,
// so its chunks are the disk's blocks.
type blockCutter struct {
	rd  io.Reader
	pos uint
}

func (c *blockCutter) Reset(rd io.Reader) { c.rd, c.pos = rd, 0 }

func (c *blockCutter) Next(buf []byte) (chunker.Chunk, error) {
	n, err := io.ReadFull(c.rd, buf[:manifest.BlockSize])
	switch {
	case n == 0 && (err == io.EOF || err == io.ErrUnexpectedEOF):
		return chunker.Chunk{}, io.EOF
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF):
		return chunker.Chunk{}, err
	}
	ch := chunker.Chunk{Start: c.pos, Length: uint(n), Data: buf[:n]}
	c.pos += uint(n)
	return ch, nil
}

func (c *blockCutter) MinSize() int64 { return manifest.BlockSize }
func (c *blockCutter) MaxSize() int64 { return manifest.BlockSize }
