package uploader

import (
	"context"
	"errors"
	"fmt"
	"math/bits"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/manifest"
)

// Changes tell a disk backup which blocks may differ from an earlier
// snapshot of the same disk in the same repository (XenServer's changed
// block tracking). With them, a backup reads only the changed blocks,
// re-cuts chunks only around them (reading the rest of those chunks back
// from the repository) and reuses the earlier region maps elsewhere. What
// it stores, and the disk's digest, are exactly what a full read would
// have produced.
type Changes struct {
	// Base is the earlier snapshot's record of the disk.
	Base *manifest.Disk
	// Bitmap has one bit per 64 KiB block, most significant bit first
	// (block i is bit 0x80>>(i%8) of byte i/8): set when the block may
	// have changed since Base was read. Its length is the number of
	// blocks rounded up to whole bytes.
	Bitmap []byte
}

// ErrChangesUnusable is wrapped by Changes.Check's errors: the backup must
// read the whole disk instead.
var ErrChangesUnusable = errors.New("the changed blocks cannot be used")

// Check reports why the changes cannot be used for a disk of size bytes
// cut with chunking.
func (c *Changes) Check(size int64, chunking manifest.Chunking) error {
	switch {
	case c.Base == nil:
		return fmt.Errorf("%w: there is no earlier snapshot of the disk", ErrChangesUnusable)
	case c.Base.Chunking != chunking:
		return fmt.Errorf("%w: the earlier snapshot cut the disk into %s, this backup cuts it into %s", ErrChangesUnusable, c.Base.Chunking, chunking)
	case c.Base.Size != size:
		return fmt.Errorf("%w: the disk was resized from %d to %d bytes since the earlier snapshot", ErrChangesUnusable, c.Base.Size, size)
	case c.Base.BlockSize != manifest.BlockSize || c.Base.RegionSize != manifest.RegionSize:
		return fmt.Errorf("%w: the earlier snapshot cut the disk with other block or region sizes", ErrChangesUnusable)
	}
	if want := BitmapLen(size); int64(len(c.Bitmap)) != want {
		return fmt.Errorf("%w: the changed-block bitmap has %d bytes, a disk of %d bytes needs %d", ErrChangesUnusable, len(c.Bitmap), size, want)
	}
	return nil
}

// BitmapLen is the length of a changed-block bitmap for a disk of size
// bytes.
func BitmapLen(size int64) int64 {
	blocks := (size + manifest.BlockSize - 1) / manifest.BlockSize
	return (blocks + 7) / 8
}

// Count returns the number of changed blocks of a disk of size bytes.
func (c *Changes) Count(size int64) int64 {
	return countBits(c.Bitmap, 0, (size+manifest.BlockSize-1)/manifest.BlockSize)
}

func bitSet(bitmap []byte, b int64) bool { return bitmap[b>>3]&(0x80>>(b&7)) != 0 }

// countBits counts the set bits of blocks [from, to).
func countBits(bitmap []byte, from, to int64) int64 {
	var n int64
	for b := from; b < to; {
		if b&7 == 0 && b+8 <= to {
			n += int64(bits.OnesCount8(bitmap[b>>3]))
			b += 8
			continue
		}
		if bitSet(bitmap, b) {
			n++
		}
		b++
	}
	return n
}

// changeWindow is how many region maps of the earlier snapshot are loaded
// at once: enough for the ranged reads to coalesce, few enough that memory
// does not grow with the disk.
const changeWindow = 64

// changedRegions backs the disk up with ch: region by region, windows of
// the earlier snapshot's region maps at a time.
func (d *diskRun) changedRegions(ctx context.Context, ch *Changes) ([]crypto.ID, []manifest.Hash, error) {
	r := d.s.r
	base, err := r.DiskRegions(ctx, ch.Base)
	if err != nil {
		return nil, nil, fmt.Errorf("the earlier snapshot of the disk: %w", err)
	}
	nreg := len(base)
	ids := make([]crypto.ID, nreg)
	hashes := make([]manifest.Hash, nreg)
	// Four times the workers of a full read: a patched region waits for
	// its changed blocks and for the chunks it reads back.
	workers := make([]*worker, min(4*d.s.opt.Workers, max(nreg, 1)))
	for i := range workers {
		workers[i] = d.newWorker()
	}
	// The next window's maps load while this window's regions are cut, so
	// the workers do not wait at each window's start.
	load := func(w0 int) <-chan loadedWindow {
		out := make(chan loadedWindow, 1)
		go func() {
			maps, err := d.loadMaps(ctx, base, w0)
			out <- loadedWindow{maps, err}
		}()
		return out
	}
	var next <-chan loadedWindow
	if nreg > 0 {
		next = load(0)
	}
	for w0 := 0; w0 < nreg; w0 += changeWindow {
		lw := <-next
		if lw.err != nil {
			return nil, nil, lw.err
		}
		if w0+changeWindow < nreg {
			next = load(w0 + changeWindow)
		}
		win := base[w0:min(w0+changeWindow, nreg)]
		err = eachIndex(ctx, workers, len(win), func(ctx context.Context, wk *worker, i int) (err error) {
			ids[w0+i], hashes[w0+i], err = wk.changedRegion(ctx, w0+i, win[i], lw.maps[i], ch.Bitmap)
			return err
		})
		if err != nil {
			if w0+changeWindow < nreg {
				<-next
			}
			return nil, nil, err
		}
	}
	return ids, hashes, nil
}

type loadedWindow struct {
	maps []*manifest.RegionMap
	err  error
}

// loadMaps loads the earlier snapshot's region maps of the window that
// starts at region w0.
func (d *diskRun) loadMaps(ctx context.Context, base []crypto.ID, w0 int) ([]*manifest.RegionMap, error) {
	win := base[w0:min(w0+changeWindow, len(base))]
	maps := make([]*manifest.RegionMap, len(win))
	err := d.s.r.LoadBlobs(ctx, win, d.s.opt.Workers, func(i int, plain []byte) error {
		m, err := manifest.DecodeRegionMap(plain, d.regionLen(w0+i))
		if err != nil {
			return fmt.Errorf("the earlier snapshot's region map %s: %w", win[i], err)
		}
		maps[i] = m
		return nil
	})
	return maps, err
}

func (d *diskRun) regionLen(ri int) int64 {
	return min(manifest.RegionSize, d.size-int64(ri)*manifest.RegionSize)
}

// changedRegion backs up region ri given the earlier snapshot's map of it.
// A region without changes keeps its map; a region with many is read
// whole; the others are patched around their changed blocks.
func (w *worker) changedRegion(ctx context.Context, ri int, baseID crypto.ID, old *manifest.RegionMap, bitmap []byte) (crypto.ID, manifest.Hash, error) {
	d := w.d
	length := d.regionLen(ri)
	first := int64(ri) * manifest.BlocksPerRegion
	nb := int64(len(old.Blocks))
	nchanged := countBits(bitmap, first, first+nb)
	if nchanged == 0 && w.allStored(old) {
		var data int64
		for _, e := range old.Extents {
			data += int64(e.Length)
		}
		d.c.Chunks.Add(int64(len(old.Extents)))
		d.c.Data.Add(data)
		d.c.Done.Add(length)
		return baseID, manifest.RegionHash(old.Blocks), nil
	}
	if nchanged*4 > nb {
		return w.region(ctx, ri)
	}
	return w.patchRegion(ctx, ri, old, bitmap)
}

// allStored reports whether every chunk of a map is in the index, so the
// map can be named again without storing anything.
func (w *worker) allStored(m *manifest.RegionMap) bool {
	idx := w.d.s.r.Index
	for _, e := range m.Extents {
		if !idx.Has(e.ID) {
			return false
		}
	}
	return true
}
