package diskread

import (
	"context"
	"fmt"

	"github.com/cofferhq/coffer/internal/manifest"
)

// Extent is a run of the disk that holds data (Data) or reads as zeros.
type Extent struct {
	Off, Len int64
	Data     bool
}

// Extents describes the disk range [off, off+length) as contiguous extents
// of data and zeros, adjacent extents of one kind merged. A block (64 KiB)
// recorded as all zeros is zero even when a chunk covers it; within a block
// that holds data, the parts no chunk covers are zero. It loads the region
// maps of the range, a window at a time.
func (d *Disk) Extents(ctx context.Context, off, length int64) ([]Extent, error) {
	if off < 0 || length < 0 || off > d.size || length > d.size-off {
		return nil, fmt.Errorf("%s: extents of %d bytes at %d: the range is outside the disk of %d bytes", d.name, length, off, d.size)
	}
	if err := d.alive(); err != nil {
		return nil, err
	}
	var out []Extent
	if length == 0 {
		return out, nil
	}
	end := off + length
	first := int(off / manifest.RegionSize)
	last := int((end - 1) / manifest.RegionSize)
	err := d.scanMaps(ctx, first, last+1, func(ri int, m *manifest.RegionMap) {
		base := int64(ri) * manifest.RegionSize
		regionExtents(m, d.regionLen(ri), func(lo, hi int64, data bool) {
			lo, hi = max(lo+base, off), min(hi+base, end)
			if lo < hi {
				out = appendExtent(out, Extent{Off: lo, Len: hi - lo, Data: data})
			}
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DataExtents returns the extents of the whole disk that hold data, merged
// where adjacent: what an image writer allocates.
func (d *Disk) DataExtents(ctx context.Context) ([]Extent, error) {
	all, err := d.Extents(ctx, 0, d.size)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, e := range all {
		if e.Data {
			out = append(out, e)
		}
	}
	return out, nil
}

// appendExtent appends e to out, merging it into the last extent when they
// meet and are of one kind.
func appendExtent(out []Extent, e Extent) []Extent {
	if n := len(out); n > 0 && out[n-1].Data == e.Data && out[n-1].Off+out[n-1].Len == e.Off {
		out[n-1].Len += e.Len
		return out
	}
	return append(out, e)
}

// regionExtents calls emit with the region-relative runs of a region of
// regionLen bytes, in order: a block whose recorded hash is the zero
// block's is zero; the rest of a block is data where a chunk covers it and
// zero elsewhere.
func regionExtents(m *manifest.RegionMap, regionLen int64, emit func(lo, hi int64, data bool)) {
	ext := m.Extents
	e := 0 // the first extent that ends after the block starts
	for b := range m.Blocks {
		lo := int64(b) * manifest.BlockSize
		hi := min(lo+manifest.BlockSize, regionLen)
		if m.Blocks[b] == manifest.ZeroBlockHash(int(hi-lo)) {
			emit(lo, hi, false)
			continue
		}
		for e < len(ext) && int64(ext[e].Offset)+int64(ext[e].Length) <= lo {
			e++
		}
		pos := lo
		for k := e; k < len(ext) && int64(ext[k].Offset) < hi; k++ {
			s, t := max(int64(ext[k].Offset), lo), min(int64(ext[k].Offset)+int64(ext[k].Length), hi)
			if s > pos {
				emit(pos, s, false)
			}
			emit(s, t, true)
			pos = t
		}
		if pos < hi {
			emit(pos, hi, false)
		}
	}
}
