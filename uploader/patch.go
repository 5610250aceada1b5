package uploader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"golang.org/x/sync/errgroup"

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
	newData [][]byte // changed blocks as read now, in slab
	slab    []byte
	nonZero []bool
	blocks  []manifest.BlockSum
	cache   map[int]cachedExtent // earlier extents read back, by index
	fetched int64
}

// patchRegion re-cuts region ri around its changed blocks.
func (w *worker) patchRegion(ctx context.Context, ri int, old *manifest.RegionMap, bitmap []byte) (crypto.ID, manifest.Hash, error) {
	d := w.d
	p := &regionPatch{w: w, off: int64(ri) * manifest.RegionSize, length: d.regionLen(ri), old: old, cache: map[int]cachedExtent{}}
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
	if err := p.readChanged(ctx); err != nil {
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
	p.evict(p.length)
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
// ones in one read, several reads at a time, while the earlier chunks that
// hold changed blocks are read back meanwhile) and works out every block's
// hash and whether it holds data.
func (p *regionPatch) readChanged(ctx context.Context) error {
	nb := len(p.changed)
	// One buffer for the region's changed blocks, run after run, kept by
	// the worker from region to region.
	var n int64
	for b := range p.changed {
		if p.changed[b] {
			n += int64(p.blockLen(b))
		}
	}
	if w := p.w; int64(cap(w.slab)) < n {
		w.slab = make([]byte, n)
	}
	p.slab = p.w.slab[:n]
	p.newData = make([][]byte, nb)
	p.nonZero = make([]bool, nb)
	p.blocks = make([]manifest.BlockSum, nb)
	var g errgroup.Group
	var used int64
	g.SetLimit(changedReads)
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
		first, last, at := b, e, used
		used += min(int64(e)*manifest.BlockSize, p.length) - int64(b)*manifest.BlockSize
		buf := p.slab[at:used:used]
		g.Go(func() error { return p.readRun(first, last, buf) })
		b = e
	}
	// The chunks a patch reads back first are those the changed blocks
	// fall in; read them while the source is read.
	ferr := p.fetch(ctx, 0, p.length, true)
	return errors.Join(g.Wait(), ferr)
}

// changedReads is how many reads of changed blocks a patched region has in
// flight.
const changedReads = 4

// readRun reads the changed blocks [b, e) into buf.
func (p *regionPatch) readRun(b, e int, buf []byte) error {
	src := p.w.d.src
	start := int64(b) * manifest.BlockSize
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
	return nil
}

// run cuts the run of non-zero blocks [start, end) (region offsets).
func (p *regionPatch) run(ctx context.Context, start, end int64) error {
	for pos := start; pos < end; {
		if e, ok := p.reusable(pos, end); ok {
			p.w.addExtent(e, false)
			pos += int64(e.Length)
			continue
		}
		var err error
		if pos, err = p.cut(ctx, pos, end); err != nil {
			return err
		}
	}
	return nil
}

// cut runs the chunker from pos, a cut, until one of its cuts meets an
// earlier extent that can be reused, or the run ends, and returns where it
// stopped.
//
// The chunker reads ahead (half a MiB at a time), and what it reads of the
// unchanged bytes must be read back from the repository; so it is fed
// segments that end one byte after an earlier cut. That byte is not read
// back (a placeholder): if the chunker cuts at the earlier cut, which it
// decides before it looks at the next byte, it resynchronises there; if it
// does not, the chunk it makes ends at the segment's end, is thrown away,
// and the chunker starts again at that chunk's start with a longer segment.
func (p *regionPatch) cut(ctx context.Context, pos, end int64) (int64, error) {
	w := p.w
	minSize := w.cut.MinSize()
	seg := p.segment(pos, pos+minSize, end)
	for {
		rd := &patchReader{p: p, ctx: ctx, pos: pos, end: seg, real: seg, block: -1, buf: &w.oldBuf}
		if seg < end {
			rd.real = seg - 1
		}
		if err := p.fetch(ctx, pos, rd.real, false); err != nil {
			return 0, err
		}
		w.cut.Reset(rd)
		from := pos
		for {
			c, err := w.cut.Next(w.chunk)
			if err != nil {
				return 0, fmt.Errorf("re-cutting around changed blocks at %d: %w", p.off+pos, err)
			}
			start, cutAt := from+int64(c.Start), from+int64(c.Start)+int64(c.Length)
			if cutAt == seg && seg < end {
				// Cut by the segment's end, not by its bytes: again, with more.
				pos, seg = start, p.segment(start, seg, end)
				break
			}
			e := manifest.Extent{Offset: uint32(start), Length: uint32(c.Length), ID: w.hasher.Sum(c.Data)}
			if err := w.addChunk(ctx, e, c.Data); err != nil {
				return 0, err
			}
			p.evict(cutAt)
			if _, ok := p.reusable(cutAt, end); ok || cutAt >= end {
				return cutAt, nil
			}
			if rd.pos > cutAt && rd.pos > rd.real {
				// The chunker holds the placeholder: start again here.
				pos, seg = cutAt, p.segment(cutAt, max(cutAt+minSize, seg), end)
				break
			}
		}
	}
}

// segment returns the end of the segment the chunker is fed from pos: one
// byte past the first earlier cut at or after x, or past the longest chunk
// from pos (a cut there is made by length, before the next byte is looked
// at), or end.
func (p *regionPatch) segment(pos, x, end int64) int64 {
	return min(p.segmentEnd(x, end), pos+p.w.cut.MaxSize()+1)
}

// segmentEnd returns one byte past the first earlier cut at or after x, or
// end.
func (p *regionPatch) segmentEnd(x, end int64) int64 {
	ext := p.old.Extents
	i := sort.Search(len(ext), func(i int) bool { return int64(ext[i].Offset)+int64(ext[i].Length) >= x })
	if i == len(ext) {
		return end
	}
	return min(int64(ext[i].Offset)+int64(ext[i].Length)+1, end)
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
	// a run that now goes on, unless every block is a chunk.
	oldRunEnd := eEnd == p.length || (eEnd%manifest.BlockSize == 0 && !p.oldData[eEnd/manifest.BlockSize])
	if eEnd < end && oldRunEnd && p.w.d.chunking != manifest.ChunkingBlocks {
		return manifest.Extent{}, false
	}
	return e, p.w.d.s.r.Index.Has(e.ID)
}

// overlapping returns the indexes [i, j) of the earlier extents that
// overlap [from, to).
func (p *regionPatch) overlapping(from, to int64) (int, int) {
	ext := p.old.Extents
	i := sort.Search(len(ext), func(i int) bool { return int64(ext[i].Offset)+int64(ext[i].Length) > from })
	j := i
	for j < len(ext) && int64(ext[j].Offset) < to {
		j++
	}
	return i, j
}

// fetch reads back, in one coalesced batch, the earlier extents that hold
// unchanged bytes of [from, to) and are not read back yet. Their IDs are
// not checked here: every block served from them is checked against its
// hash (oldBlock), and the extents of a block served in part are checked
// by ID.
func (p *regionPatch) fetch(ctx context.Context, from, to int64, onlyChanged bool) error {
	i, j := p.overlapping(from, to)
	var want []int
	var ids []crypto.ID
	for k := i; k < j; k++ {
		e := p.old.Extents[k]
		lo, hi := int64(e.Offset), int64(e.Offset)+int64(e.Length)
		if _, ok := p.cache[k]; ok || p.allChanged(lo, hi) || (onlyChanged && !p.anyChanged(lo, hi)) {
			continue
		}
		want, ids = append(want, k), append(ids, e.ID)
	}
	if len(ids) == 0 {
		return nil
	}
	w := p.w
	if w.blobs == nil {
		w.blobs = w.d.s.r.NewBlobReader()
	}
	err := w.blobs.ReadUnchecked(ctx, ids, func(n int, plain []byte) error {
		k := want[n]
		if len(plain) != int(p.old.Extents[k].Length) {
			return fmt.Errorf("chunk %s of the earlier snapshot has %d bytes, its extent says %d: %w", ids[n], len(plain), p.old.Extents[k].Length, manifest.ErrFormat)
		}
		p.cache[k] = cachedExtent{data: append(w.spareBuf(), plain...)}
		p.fetched += int64(len(plain))
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading back chunks of the earlier snapshot to re-cut around changed blocks: %w", err)
	}
	return nil
}

// anyChanged reports whether a block overlapping [from, to) changed.
func (p *regionPatch) anyChanged(from, to int64) bool {
	for b := from / manifest.BlockSize; b <= (to-1)/manifest.BlockSize; b++ {
		if p.changed[b] {
			return true
		}
	}
	return false
}

// allChanged reports whether every block overlapping [from, to) changed.
func (p *regionPatch) allChanged(from, to int64) bool {
	for b := from / manifest.BlockSize; b <= (to-1)/manifest.BlockSize; b++ {
		if !p.changed[b] {
			return false
		}
	}
	return true
}

// evict forgets the extents read back that end at or before pos: the
// chunker never starts again before the last accepted cut.
func (p *regionPatch) evict(pos int64) {
	for k, ce := range p.cache {
		if int64(p.old.Extents[k].Offset)+int64(p.old.Extents[k].Length) <= pos {
			p.w.spare = append(p.w.spare, ce.data[:0])
			delete(p.cache, k)
		}
	}
}

// spareBuf returns an empty buffer for a chunk read back, reusing those of
// chunks forgotten.
func (w *worker) spareBuf() []byte {
	if n := len(w.spare); n > 0 {
		b := w.spare[n-1]
		w.spare = w.spare[:n-1]
		return b
	}
	return nil
}

// oldBlock fills dst with the bytes of unchanged block b up to region
// offset real (zeros after it) as the earlier chunks hold them, and checks
// them: a whole block against its hash, a part of one through the IDs of
// its extents.
func (p *regionPatch) oldBlock(ctx context.Context, b int, dst []byte, real int64) error {
	start := int64(b) * manifest.BlockSize
	end := min(start+int64(len(dst)), real)
	clear(dst)
	if err := p.fetch(ctx, start, end, false); err != nil {
		return err
	}
	i, j := p.overlapping(start, end)
	for k := i; k < j; k++ {
		e := p.old.Extents[k]
		ce := p.cache[k]
		if end < start+int64(len(dst)) && !ce.checked {
			if p.w.hasher.Sum(ce.data) != e.ID {
				return fmt.Errorf("chunk %s of the earlier snapshot does not match its ID when read back (run coffer check): %w", e.ID, manifest.ErrFormat)
			}
			ce.checked = true
			p.cache[k] = ce
		}
		lo, hi := max(start, int64(e.Offset)), min(end, int64(e.Offset)+int64(e.Length))
		copy(dst[lo-start:hi-start], ce.data[lo-int64(e.Offset):hi-int64(e.Offset)])
	}
	if end == start+int64(len(dst)) && manifest.BlockHash(dst) != p.old.Blocks[b] {
		return fmt.Errorf("block %d of the earlier snapshot does not match its hash when read back from the repository (run coffer check): %w", p.off/manifest.BlockSize+int64(b), manifest.ErrFormat)
	}
	return nil
}

// cachedExtent is an earlier extent read back.
type cachedExtent struct {
	data    []byte
	checked bool // its ID was checked
}

// patchReader serves the new bytes of a run from pos to end, block by
// block, to the chunker; bytes at and after real are placeholders (zeros).
type patchReader struct {
	p        *regionPatch
	ctx      context.Context
	pos, end int64
	real     int64
	block    int                       // the block in buf, or -1
	buf      *[manifest.BlockSize]byte // the worker's, for unchanged blocks
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
		if err := p.oldBlock(r.ctx, b, data, r.real); err != nil {
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
	id, err := w.storeMeta(ctx, m.Encode())
	if err == nil && w.d.s.mapPacks != nil {
		// The receipt then finds this map's chunks without reading it.
		w.d.s.mapPacks.Note(id, m.Extents)
	}
	return id, err
}

// storeMeta stores a metadata chunk unless it is stored already and
// returns its ID.
func (w *worker) storeMeta(ctx context.Context, data []byte) (crypto.ID, error) {
	id := w.hasher.Sum(data)
	if w.d.s.pk.claim(id) {
		if err := w.store(ctx, pack.TypeMeta, id, data); err != nil {
			return crypto.ID{}, err
		}
	}
	return id, nil
}
