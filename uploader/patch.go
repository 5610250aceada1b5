package uploader

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/sparse"
	"github.com/cofferhq/coffer/uploader/source"
)

// regionPatch is one region being re-cut around its changed blocks. The
// chunker's cuts depend only on the bytes since the last cut (it restarts
// at every cut and at every run of non-zero blocks), so an earlier extent
// that starts where the new cutting stands, holds no changed block and did
// not end only because its run ended, is a chunk the new cutting would
// produce too: it is reused as it is. Between such extents the chunker
// runs over the new bytes: changed blocks read from the source, unchanged
// ones read back from the earlier chunks, until its cut meets an earlier
// one again.
type regionPatch struct {
	w       *worker
	off     int64 // region start on the disk
	length  int64
	old     *manifest.RegionMap
	starts  map[uint32]int // offset of each earlier extent -> its index
	oldData []bool         // block was non-zero in the earlier snapshot
	changed []bool
	newData [][]byte // changed blocks as read now
	nonZero []bool
	blocks  []manifest.BlockSum
	cache   map[int][]byte // earlier extents read back, by index
	fetched int64
}

// patchRegion re-cuts region ri around its changed blocks.
func (w *worker) patchRegion(ctx context.Context, ri int, old *manifest.RegionMap, bitmap []byte) (crypto.ID, manifest.Hash, error) {
	d := w.d
	p := &regionPatch{w: w, off: int64(ri) * manifest.RegionSize, length: d.regionLen(ri), old: old, cache: map[int][]byte{}}
	nb := len(old.Blocks)
	p.starts = make(map[uint32]int, len(old.Extents))
	p.oldData = make([]bool, nb)
	for i, e := range old.Extents {
		p.starts[e.Offset] = i
		for b := int64(e.Offset) / manifest.BlockSize; b <= (int64(e.Offset)+int64(e.Length)-1)/manifest.BlockSize; b++ {
			p.oldData[b] = true
		}
	}
	p.changed = make([]bool, nb)
	first := int64(ri) * manifest.BlocksPerRegion
	for b := range p.changed {
		p.changed[b] = bitSet(bitmap, first+int64(b))
	}
	if err := p.readChanged(); err != nil {
		return crypto.ID{}, manifest.Hash{}, err
	}
	w.extents = w.extents[:0]
	for b := 0; b < nb; {
		if !p.nonZero[b] {
			b++
			continue
		}
		e := b
		for e < nb && p.nonZero[e] {
			e++
		}
		if err := p.run(ctx, int64(b)*manifest.BlockSize, min(int64(e)*manifest.BlockSize, p.length)); err != nil {
			return crypto.ID{}, manifest.Hash{}, err
		}
		b = e
	}
	d.c.Fetched.Add(p.fetched)
	id, err := w.storeMap(ctx, manifest.RegionMap{Extents: w.extents, Blocks: p.blocks})
	if err != nil {
		return crypto.ID{}, manifest.Hash{}, err
	}
	d.c.Done.Add(p.length)
	return id, manifest.RegionHash(p.blocks), nil
}

func (p *regionPatch) blockLen(b int) int {
	return int(min(manifest.BlockSize, p.length-int64(b)*manifest.BlockSize))
}

// readChanged reads the changed blocks from the source (runs of adjacent
// ones in one read) and works out every block's hash and whether it holds
// data.
func (p *regionPatch) readChanged() error {
	src := p.w.d.src
	nb := len(p.changed)
	p.newData = make([][]byte, nb)
	p.nonZero = make([]bool, nb)
	p.blocks = make([]manifest.BlockSum, nb)
	for b := 0; b < nb; {
		if !p.changed[b] {
			p.nonZero[b], p.blocks[b] = p.oldData[b], p.old.Blocks[b]
			b++
			continue
		}
		e := b
		for e < nb && p.changed[e] {
			e++
		}
		start, end := int64(b)*manifest.BlockSize, min(int64(e)*manifest.BlockSize, p.length)
		buf := make([]byte, end-start)
		n, err := src.ReadAt(buf, p.off+start)
		if err == io.EOF && n == len(buf) {
			err = nil
		}
		if err != nil {
			return source.Errorf(src.Path(), "reading the changed blocks of %s at %d: %w", src.Path(), p.off+start, err)
		}
		p.w.d.c.Read.Add(int64(n))
		for i := b; i < e; i++ {
			blk := buf[int64(i-b)*manifest.BlockSize:][:p.blockLen(i)]
			p.newData[i] = blk
			p.nonZero[i] = !sparse.IsZero(blk)
			if p.nonZero[i] {
				p.blocks[i] = manifest.BlockHash(blk)
			} else {
				p.blocks[i] = manifest.ZeroBlockHash(len(blk))
			}
		}
		b = e
	}
	return nil
}

// run cuts the run of non-zero blocks [start, end) (region offsets).
func (p *regionPatch) run(ctx context.Context, start, end int64) error {
	w := p.w
	r := w.d.s.r
	cp := r.Config().Chunker
	for pos := start; pos < end; {
		if e, ok := p.reusable(pos, end); ok {
			w.addExtent(e, false)
			pos += int64(e.Length)
			continue
		}
		rd := &patchReader{p: p, ctx: ctx, pos: pos, end: end, block: -1}
		w.ch.ResetWithBoundaries(rd, r.Polynomial(), cp.Min, cp.Max)
		w.ch.SetAverageBits(cp.AvgBits)
		from := pos
		for pos < end {
			c, err := w.ch.Next(w.chunk)
			if err == io.EOF {
				return fmt.Errorf("internal error: the chunker ended at %d before the run's end %d", pos, end)
			}
			if err != nil {
				return err
			}
			e := manifest.Extent{Offset: uint32(from) + uint32(c.Start), Length: uint32(c.Length), ID: w.hasher.Sum(c.Data)}
			if err := w.addChunk(ctx, e, c.Data); err != nil {
				return err
			}
			pos = int64(e.Offset) + int64(e.Length)
			if _, ok := p.reusable(pos, end); ok {
				break
			}
		}
	}
	return nil
}

// reusable returns the earlier extent that starts at pos if the new
// cutting, restarted at pos, would cut it exactly as before.
func (p *regionPatch) reusable(pos, end int64) (manifest.Extent, bool) {
	i, ok := p.starts[uint32(pos)]
	if !ok {
		return manifest.Extent{}, false
	}
	e := p.old.Extents[i]
	eEnd := pos + int64(e.Length)
	if eEnd > end {
		return manifest.Extent{}, false
	}
	for b := pos / manifest.BlockSize; b <= (eEnd-1)/manifest.BlockSize; b++ {
		if p.changed[b] {
			return manifest.Extent{}, false
		}
	}
	// An extent that ended only because its run ended is not a chunk of
	// a run that now goes on.
	oldRunEnd := eEnd == p.length || (eEnd%manifest.BlockSize == 0 && !p.oldData[eEnd/manifest.BlockSize])
	if eEnd < end && oldRunEnd {
		return manifest.Extent{}, false
	}
	return e, p.w.d.s.r.Index.Has(e.ID)
}

// oldExtent returns the plaintext of earlier extent i, read back from the
// repository once.
func (p *regionPatch) oldExtent(ctx context.Context, i int) ([]byte, error) {
	if b, ok := p.cache[i]; ok {
		return b, nil
	}
	e := p.old.Extents[i]
	b, err := p.w.d.s.r.LoadBlob(ctx, e.ID)
	if err != nil {
		return nil, fmt.Errorf("reading back chunk %s of the earlier snapshot to re-cut around changed blocks: %w", e.ID, err)
	}
	if len(b) != int(e.Length) {
		return nil, fmt.Errorf("chunk %s of the earlier snapshot has %d bytes, its extent says %d: %w", e.ID, len(b), e.Length, manifest.ErrFormat)
	}
	p.fetched += int64(len(b))
	p.cache[i] = b
	return b, nil
}

// oldBlock fills dst with unchanged block b as the earlier chunks hold it,
// and checks it against the block's hash.
func (p *regionPatch) oldBlock(ctx context.Context, b int, dst []byte) error {
	start := int64(b) * manifest.BlockSize
	end := start + int64(len(dst))
	clear(dst)
	ext := p.old.Extents
	i := sort.Search(len(ext), func(i int) bool { return int64(ext[i].Offset)+int64(ext[i].Length) > start })
	for ; i < len(ext) && int64(ext[i].Offset) < end; i++ {
		data, err := p.oldExtent(ctx, i)
		if err != nil {
			return err
		}
		lo, hi := max(start, int64(ext[i].Offset)), min(end, int64(ext[i].Offset)+int64(ext[i].Length))
		copy(dst[lo-start:hi-start], data[lo-int64(ext[i].Offset):hi-int64(ext[i].Offset)])
	}
	if manifest.BlockHash(dst) != p.old.Blocks[b] {
		return fmt.Errorf("block %d of the earlier snapshot does not match its hash when read back from the repository (run coffer check): %w", p.off/manifest.BlockSize+int64(b), manifest.ErrFormat)
	}
	// Chunks that end before this block are not needed again.
	for k := range p.cache {
		if int64(ext[k].Offset)+int64(ext[k].Length) <= start {
			delete(p.cache, k)
		}
	}
	return nil
}

// patchReader serves the new bytes of a run from pos to end, block by
// block, to the chunker.
type patchReader struct {
	p        *regionPatch
	ctx      context.Context
	pos, end int64
	block    int // the block in buf, or -1
	buf      [manifest.BlockSize]byte
}

func (r *patchReader) Read(dst []byte) (int, error) {
	n := 0
	for n < len(dst) && r.pos < r.end {
		b := int(r.pos / manifest.BlockSize)
		data, err := r.blockData(b)
		if err != nil {
			return n, err
		}
		k := copy(dst[n:], data[r.pos-int64(b)*manifest.BlockSize:min(int64(len(data)), r.end-int64(b)*manifest.BlockSize)])
		n += k
		r.pos += int64(k)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (r *patchReader) blockData(b int) ([]byte, error) {
	p := r.p
	if p.changed[b] {
		return p.newData[b], nil
	}
	data := r.buf[:p.blockLen(b)]
	if r.block != b {
		if err := p.oldBlock(r.ctx, b, data); err != nil {
			return nil, err
		}
		r.block = b
	}
	return data, nil
}

// addExtent records an extent of the region being cut and counts it.
func (w *worker) addExtent(e manifest.Extent, isNew bool) {
	w.extents = append(w.extents, e)
	w.d.c.Chunks.Add(1)
	w.d.c.Data.Add(int64(e.Length))
	if isNew {
		w.d.c.NewChunks.Add(1)
		w.d.c.NewBytes.Add(int64(e.Length))
	}
}

// addChunk records a chunk just cut and stores it unless it is stored
// already.
func (w *worker) addChunk(ctx context.Context, e manifest.Extent, data []byte) error {
	isNew := w.d.s.pk.claim(e.ID)
	w.addExtent(e, isNew)
	if isNew {
		return w.store(ctx, pack.TypeData, e.ID, data)
	}
	return nil
}

// storeMap stores a region map unless it is stored already and returns its
// ID.
func (w *worker) storeMap(ctx context.Context, m manifest.RegionMap) (crypto.ID, error) {
	data := m.Encode()
	id := w.hasher.Sum(data)
	if w.d.s.pk.claim(id) {
		if err := w.store(ctx, pack.TypeMeta, id, data); err != nil {
			return crypto.ID{}, err
		}
	}
	return id, nil
}
