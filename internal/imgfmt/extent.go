package imgfmt

import (
	"fmt"
	"slices"
)

// SectorSize is the unit both formats count a disk in.
const SectorSize = 512

// Extent is a range of the guest disk that holds data: Len bytes from Off.
type Extent struct{ Off, Len int64 }

// End is the offset just past the extent.
func (e Extent) End() int64 { return e.Off + e.Len }

// normalize checks extents against the disk size and returns them sorted,
// with overlapping and touching extents merged and empty ones dropped.
func normalize(size int64, data []Extent) ([]Extent, error) {
	out := make([]Extent, 0, len(data))
	for _, e := range data {
		if e.Off < 0 || e.Len < 0 || e.Off > size || e.Len > size-e.Off {
			return nil, fmt.Errorf("data extent of %d bytes at offset %d does not lie within the %d-byte disk", e.Len, e.Off, size)
		}
		if e.Len > 0 {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Extent) int {
		switch {
		case a.Off < b.Off:
			return -1
		case a.Off > b.Off:
			return 1
		}
		return 0
	})
	merged := out[:0]
	for _, e := range out {
		if n := len(merged); n > 0 && e.Off <= merged[n-1].End() {
			merged[n-1].Len = max(merged[n-1].End(), e.End()) - merged[n-1].Off
			continue
		}
		merged = append(merged, e)
	}
	return merged, nil
}

// covers reports whether [off, off+n) lies inside one of the normalized
// extents.
func covers(exts []Extent, off, n int64) bool {
	i, found := slices.BinarySearchFunc(exts, off, func(e Extent, t int64) int {
		switch {
		case e.End() <= t:
			return -1
		case e.Off > t:
			return 1
		}
		return 0
	})
	return found && i < len(exts) && n <= exts[i].End()-off
}

// unitRun is a stretch of consecutive allocated units (VHD blocks, qcow2
// clusters): units [first, first+n) of the guest, whose first unit starts
// at file offset base; each next unit is stride bytes further.
type unitRun struct {
	first, n int64
	base     int64
}

// unitRuns turns normalized extents into the runs of units they touch, in
// guest order, without file offsets yet.
func unitRuns(exts []Extent, unit int64) []unitRun {
	var runs []unitRun
	for _, e := range exts {
		first, last := e.Off/unit, (e.End()-1)/unit
		if n := len(runs); n > 0 && first <= runs[n-1].first+runs[n-1].n {
			runs[n-1].n = max(runs[n-1].n, last+1-runs[n-1].first)
			continue
		}
		runs = append(runs, unitRun{first: first, n: last + 1 - first})
	}
	return runs
}

// place gives each run its file offset: units are laid out one after the
// other from start, stride bytes apart. It returns the offset past the last.
func place(runs []unitRun, start, stride int64) int64 {
	pos := start
	for i := range runs {
		runs[i].base = pos
		pos += runs[i].n * stride
	}
	return pos
}

// countUnits is the number of units in runs.
func countUnits(runs []unitRun) int64 {
	var n int64
	for _, r := range runs {
		n += r.n
	}
	return n
}

// findRun returns the index of the run holding unit u and true, or the
// index of the first run after u and false.
func findRun(runs []unitRun, u int64) (int, bool) {
	return slices.BinarySearchFunc(runs, u, func(r unitRun, t int64) int {
		switch {
		case r.first+r.n <= t:
			return -1
		case r.first > t:
			return 1
		}
		return 0
	})
}

func roundUp(n, m int64) int64 { return (n + m - 1) / m * m }

func ceilDiv(n, m int64) int64 { return (n + m - 1) / m }
