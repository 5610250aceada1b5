package parity

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
)

// Repair rebuilds the damaged data files (indexes into sizes; parity file j
// is len(sizes)+j) from the intact files and the intact parity files: out(i)
// receives damaged data file i whole, its size in sizes (out(i) is called
// for each window of the file, once for an empty file). It never opens a damaged
// file and needs nothing for damaged parity files. When Check refuses the
// damage, Repair returns its *Unrepairable before writing anything. The
// caller verifies the rebuilt files' hashes.
func Repair(ctx context.Context, l *Layout, sizes []int64, damaged []int, open OpenFunc, out WriteFunc, o Options) error {
	sm, err := l.index(sizes)
	if err != nil {
		return err
	}
	d, err := sm.damagedSet(damaged)
	if err != nil {
		return err
	}
	if err := sm.check(d); err != nil {
		return err
	}
	for _, i := range d {
		if i < len(sizes) && sizes[i] == 0 {
			if err := writeAt(out, i, nil, 0); err != nil {
				return fmt.Errorf("parity: writing repaired file %d: %w", i, err)
			}
		}
	}
	segs := sm.segments(d)
	if len(segs) == 0 {
		return nil
	}
	c, err := newCoder(l, o)
	if err != nil {
		return err
	}
	r := &repairer{sm: sm, c: c, open: open, out: out, o: o, parity: intactParity(sm, d)}
	var at int64 // the window: [at, end) on a grid of c.w
	for first := 0; first < len(segs); {
		at = max(at, segs[first].start/c.w*c.w)
		end := min(at+c.w, l.ShardSize)
		last := first
		for last < len(segs) && segs[last].start < end {
			last++
		}
		if err := r.columns(ctx, at, end, segs[first:last]); err != nil {
			return err
		}
		at, first = end, last
		if first > 0 && segs[first-1].end > end {
			first-- // the segment goes on into the next window
		}
	}
	return nil
}

// segment is the columns [start, end) in which the same damaged data files
// are unknown.
type segment struct {
	start, end int64
	files      []int
}

// segments cuts the columns that hold damaged data files into segments.
// Their bounds are multiples of 64, as leopard needs.
func (sm *shardMap) segments(damaged []int) []segment {
	var data []int
	for _, i := range damaged {
		if i < len(sm.sizes) {
			data = append(data, i)
		}
	}
	ext := sm.extents(data)
	type mark struct {
		at   int64
		file int
		in   bool
	}
	marks := make([]mark, 0, 2*len(ext))
	for _, x := range ext {
		marks = append(marks, mark{x.start, x.file, true}, mark{x.end, x.file, false})
	}
	slices.SortFunc(marks, func(a, b mark) int { return cmp.Compare(a.at, b.at) })
	active := map[int]bool{}
	var segs []segment
	for m, mk := range marks {
		if mk.in {
			active[mk.file] = true
		} else {
			delete(active, mk.file)
		}
		if next := m + 1; next < len(marks) && marks[next].at > mk.at && len(active) > 0 {
			segs = append(segs, segment{mk.at, marks[next].at, slices.Sorted(maps.Keys(active))})
		}
	}
	return segs
}

// intactParity is the parity shards (as indexes among the shards) whose
// files are not damaged.
func intactParity(sm *shardMap, damaged []int) []int {
	var out []int
	for j := range sm.l.ParityShards {
		if _, found := slices.BinarySearch(damaged, len(sm.sizes)+j); !found {
			out = append(out, sm.l.DataShards+j)
		}
	}
	return out
}

// repairer rebuilds damaged data files window by window.
type repairer struct {
	sm     *shardMap
	c      *coder
	open   OpenFunc
	out    WriteFunc
	o      Options
	parity []int // intact parity shards
}

// columns rebuilds the damaged files in columns [at, end), one window,
// given the segments that overlap it. When the window's damaged files
// together leave few enough shards unknown (always when each file has its
// own shard, since all shards start at column 0) it is one reconstruction;
// otherwise each segment's part is one.
func (r *repairer) columns(ctx context.Context, at, end int64, segs []segment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var union []int
	for _, sg := range segs {
		union = append(union, sg.files...)
	}
	slices.Sort(union)
	if union = slices.Compact(union); r.unknownShards(union) <= len(r.parity) {
		return r.window(ctx, at, end-at, union)
	}
	for _, sg := range segs {
		lo, hi := max(sg.start, at), min(sg.end, end)
		if err := r.window(ctx, lo, hi-lo, sg.files); err != nil {
			return err
		}
	}
	return nil
}

// window rebuilds columns [at, at+n) of the damaged files given, reading
// the intact data shards and as many intact parity shards as shards are
// unknown.
func (r *repairer) window(ctx context.Context, at, n int64, damaged []int) error {
	k, c := r.sm.l.DataShards, r.c
	for s := range c.shards {
		c.shards[s] = c.bufs[s][:0]
		if s < k {
			c.shards[s] = c.bufs[s][:n]
		}
	}
	for _, i := range damaged {
		c.shards[r.sm.l.Placement(i).Shard] = c.bufs[r.sm.l.Placement(i).Shard][:0]
	}
	for _, s := range r.parity[:r.unknownShards(damaged)] {
		c.shards[s] = c.bufs[s][:n]
	}
	if _, err := r.sm.readShards(ctx, at, c.shards, r.open, r.o.readers()); err != nil {
		return err
	}
	if err := c.enc.ReconstructData(c.shards); err != nil {
		return fmt.Errorf("parity: rebuilding bytes %d..%d: %w", at, at+n, err)
	}
	var done int64
	for _, i := range damaged {
		start, end := r.sm.span(i)
		lo, hi := max(start, at), min(end, at+n)
		if hi <= lo {
			continue
		}
		buf := c.shards[r.sm.l.Placement(i).Shard]
		if err := writeAt(r.out, i, buf[lo-at:hi-at], lo-start); err != nil {
			return fmt.Errorf("parity: writing repaired file %d: %w", i, err)
		}
		done += hi - lo
	}
	r.o.progress(done)
	return nil
}

// unknownShards is the number of shards the damaged files lie in.
func (r *repairer) unknownShards(damaged []int) int {
	shards := make(map[int]bool, len(damaged))
	for _, i := range damaged {
		shards[r.sm.l.Placement(i).Shard] = true
	}
	return len(shards)
}
