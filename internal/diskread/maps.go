package diskread

import (
	"context"
	"fmt"
	"sort"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/manifest"
)

// mapCache keeps decoded region maps by region index.
type mapCache struct {
	lru    *lru.Cache[int, *manifest.RegionMap]
	flying flights[int, *manifest.RegionMap]
}

func newMapCache(n int) *mapCache {
	c, _ := lru.New[int, *manifest.RegionMap](n) // n > 0 (withDefaults)
	return &mapCache{lru: c}
}

// regionLen is the length of region ri.
func (d *Disk) regionLen(ri int) int64 {
	return min(manifest.RegionSize, d.size-int64(ri)*manifest.RegionSize)
}

// decodeMap parses the map of region ri.
func (d *Disk) decodeMap(ri int, b []byte) (*manifest.RegionMap, error) {
	m, err := manifest.DecodeRegionMap(b, d.regionLen(ri))
	if err == nil {
		err = checkHoles(m, d.regionLen(ri), int64(ri)*manifest.RegionSize)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: region %d map %s: %w (the snapshot is damaged: run coffer check)", d.name, ri, d.regions[ri], err)
	}
	return m, nil
}

// checkHoles checks that every block of a region (at disk offset base)
// that no chunk touches was recorded as zeros: reads give zeros there, and
// they must be what was backed up.
func checkHoles(m *manifest.RegionMap, regionLen, base int64) error {
	e := 0 // the first extent that ends after the block starts
	for b := range m.Blocks {
		lo := int64(b) * manifest.BlockSize
		hi := min(lo+manifest.BlockSize, regionLen)
		for e < len(m.Extents) && int64(m.Extents[e].Offset)+int64(m.Extents[e].Length) <= lo {
			e++
		}
		touched := e < len(m.Extents) && int64(m.Extents[e].Offset) < hi
		if !touched && m.Blocks[b] != manifest.ZeroBlockHash(int(hi-lo)) {
			return fmt.Errorf("the block at disk offset %d held data at backup, but no chunk covers it: %w", base+lo, manifest.ErrFormat)
		}
	}
	return nil
}

// regionMap returns the map of region ri, from the cache or loaded alone:
// a reader waits for one small blob, not a window of them.
func (d *Disk) regionMap(ctx context.Context, ri int) (*manifest.RegionMap, error) {
	if m, ok := d.maps.lru.Get(ri); ok {
		return m, nil
	}
	c, mine := d.maps.flying.claim(ri)
	if !mine {
		return c.wait(ctx)
	}
	if m, ok := d.maps.lru.Get(ri); ok { // loaded between the miss and the claim
		d.maps.flying.finish(ri, c, m, nil)
		return m, nil
	}
	m, err := d.loadMap(ri)
	if err == nil {
		d.maps.lru.Add(ri, m)
	}
	d.maps.flying.finish(ri, c, m, err)
	return c.wait(ctx)
}

// loadMap loads and decodes the map of region ri under the Disk's context.
func (d *Disk) loadMap(ri int) (*manifest.RegionMap, error) {
	b, err := d.r.LoadBlob(d.ctx, d.regions[ri])
	if err != nil {
		return nil, fmt.Errorf("%s: region %d map: %w", d.name, ri, err)
	}
	d.stats.maps.Add(1)
	return d.decodeMap(ri, b)
}

// prefetchMaps loads the maps of regions [first, end) that are neither
// cached nor being loaded, in coalesced ranged reads, into the cache: the
// readahead's maps come a window at a time.
func (d *Disk) prefetchMaps(first, end int) {
	var idx []int
	var calls []*call[*manifest.RegionMap]
	for ri := first; ri < min(end, len(d.regions)); ri++ {
		if d.maps.lru.Contains(ri) {
			continue
		}
		if c, mine := d.maps.flying.claim(ri); mine {
			idx, calls = append(idx, ri), append(calls, c)
		}
	}
	if len(idx) == 0 {
		return
	}
	got, err := d.loadMaps(idx)
	for i, ri := range idx {
		if got[i] != nil {
			d.maps.lru.Add(ri, got[i])
			d.maps.flying.finish(ri, calls[i], got[i], nil)
			continue
		}
		if err == nil {
			err = fmt.Errorf("%s: region %d map was not loaded", d.name, ri)
		}
		d.maps.flying.finish(ri, calls[i], nil, err)
	}
}

// loadMaps loads and decodes the maps of regions idx in coalesced ranged
// reads. On error, the maps loaded before it are still returned.
func (d *Disk) loadMaps(idx []int) ([]*manifest.RegionMap, error) {
	ids := make([]crypto.ID, len(idx))
	for i, ri := range idx {
		ids[i] = d.regions[ri]
	}
	out := make([]*manifest.RegionMap, len(idx))
	err := d.r.LoadBlobs(d.ctx, ids, d.opt.Workers, func(i int, b []byte) error {
		m, err := d.decodeMap(idx[i], b)
		out[i] = m
		d.stats.maps.Add(1)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("%s: region maps %d to %d: %w", d.name, idx[0], idx[len(idx)-1], err)
	}
	return out, nil
}

// scanWindow is the most region maps a scan (Extents of a long range)
// loads at once: its memory stays small whatever the disk's size.
const scanWindow = 16

// scanMaps calls fn with each region index in [first, end) and its map, a
// window of maps at a time. Maps found in the cache are used; the others
// are loaded but not cached, so a scan of the whole disk does not evict
// what the readers are using.
func (d *Disk) scanMaps(ctx context.Context, first, end int, fn func(ri int, m *manifest.RegionMap)) error {
	for w := first; w < end; w += scanWindow {
		wend := min(w+scanWindow, end)
		maps := make([]*manifest.RegionMap, wend-w)
		var missing []int
		for ri := w; ri < wend; ri++ {
			if m, ok := d.maps.lru.Peek(ri); ok {
				maps[ri-w] = m
			} else {
				missing = append(missing, ri)
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(missing) > 0 {
			got, err := d.loadMaps(missing)
			if err != nil {
				return err
			}
			for i, ri := range missing {
				maps[ri-w] = got[i]
			}
		}
		for i, m := range maps {
			fn(w+i, m)
		}
	}
	return nil
}

// piece is a part of a read: n bytes at disk offset off, either zeros
// (chunk < 0) or the bytes of wants[chunk] from skip on.
type piece struct {
	off, n int64
	chunk  int
	skip   int64
}

// want is a chunk a read needs: its ID and length, and the disk offset of
// one place it is used (for errors).
type want struct {
	id     crypto.ID
	off    int64
	length uint32
}

// pieces maps the disk range [off, off+n) onto chunks and zeros, loading
// the region maps it needs. Each chunk is wanted once, however many times
// the range uses it.
func (d *Disk) pieces(ctx context.Context, off, n int64) ([]piece, []want, error) {
	var out []piece
	var wants []want
	seen := map[crypto.ID]int{}
	end := off + n
	for ri := int(off / manifest.RegionSize); ri < len(d.regions) && int64(ri)*manifest.RegionSize < end; ri++ {
		m, err := d.regionMap(ctx, ri)
		if err != nil {
			return nil, nil, err
		}
		base := int64(ri) * manifest.RegionSize
		lo, hi := max(off, base), min(end, base+d.regionLen(ri))
		pos := lo
		ext := m.Extents
		i := sort.Search(len(ext), func(i int) bool { return base+int64(ext[i].Offset)+int64(ext[i].Length) > lo })
		for ; i < len(ext) && base+int64(ext[i].Offset) < hi; i++ {
			es := base + int64(ext[i].Offset)
			if es > pos {
				out = append(out, piece{off: pos, n: es - pos, chunk: -1})
				pos = es
			}
			k, ok := seen[ext[i].ID]
			if !ok {
				k = len(wants)
				seen[ext[i].ID] = k
				wants = append(wants, want{id: ext[i].ID, off: es, length: ext[i].Length})
			}
			t := min(es+int64(ext[i].Length), hi)
			out = append(out, piece{off: pos, n: t - pos, chunk: k, skip: pos - es})
			pos = t
		}
		if pos < hi {
			out = append(out, piece{off: pos, n: hi - pos, chunk: -1})
		}
	}
	return out, wants, nil
}
