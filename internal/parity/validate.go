package parity

import (
	"cmp"
	"fmt"
	"slices"
)

// shardMap is a validated layout with its files sorted by shard and offset.
type shardMap struct {
	l     *Layout
	sizes []int64
	order []int // file indexes sorted by shard, then offset
	start []int // the files of shard s are order[start[s]:start[s+1]]
}

// Validate reports whether the layout fits files of the given sizes: the
// code matches the shard counts, each shard is its files one after the
// other, each at the first 64-byte boundary after the one before (as Plan
// lays them out), and ShardSize is the longest shard rounded up to 64 bytes.
// Its errors wrap ErrLayout.
func (l *Layout) Validate(sizes []int64) error {
	_, err := l.index(sizes)
	return err
}

func (l *Layout) index(sizes []int64) (*shardMap, error) {
	if l == nil {
		return nil, fmt.Errorf("%w: there is no layout", ErrLayout)
	}
	if err := l.checkCounts(len(sizes)); err != nil {
		return nil, err
	}
	if err := checkSizes(sizes); err != nil {
		return nil, err
	}
	end, err := l.checkPlaces(sizes)
	if err != nil {
		return nil, err
	}
	sm := &shardMap{l: l, sizes: sizes}
	if err := sm.sort(); err != nil {
		return nil, err
	}
	if want := shardSize(end); l.ShardSize != want {
		return nil, badLayout("shard size is %d bytes, but its files need %d", l.ShardSize, want)
	}
	return sm, nil
}

func badLayout(format string, args ...any) error {
	return fmt.Errorf("%w: "+format+"; the seed's manifest is damaged or was written by another version", append([]any{ErrLayout}, args...)...)
}

func (l *Layout) checkCounts(files int) error {
	k, m := l.DataShards, l.ParityShards
	switch {
	case k < 1 || m < 1:
		return badLayout("%d data and %d parity shards (at least one of each)", k, m)
	case k > files:
		return badLayout("%d data shards for %d files", k, files)
	case k > MaxShards || m > MaxShards || k+m > MaxShards:
		return badLayout("%d data and %d parity shards, more than %d in all", k, m, MaxShards)
	case l.Code != codeFor(k, m):
		return badLayout("code %q for %d shards in all, want %q", l.Code, k+m, codeFor(k, m))
	case l.Code == CodeGF16 && k > maxDataShards(m, MaxShards):
		return badLayout("%d data and %d parity shards, a combination leopard cannot encode", k, m)
	}
	return nil
}

// checkPlaces checks each file's placement on its own and returns the
// longest shard's end.
func (l *Layout) checkPlaces(sizes []int64) (int64, error) {
	if len(l.Place) == 0 {
		if l.DataShards != len(sizes) {
			return 0, badLayout("no placements, but %d data shards for %d files", l.DataShards, len(sizes))
		}
		return slices.Max(sizes), nil
	}
	if len(l.Place) != len(sizes) {
		return 0, badLayout("%d placements for %d files", len(l.Place), len(sizes))
	}
	var end int64
	for i, p := range l.Place {
		switch {
		case p.Shard < 0 || p.Shard >= l.DataShards:
			return 0, badLayout("file %d is in shard %d of %d", i, p.Shard, l.DataShards)
		case p.Offset < 0 || p.Offset%block != 0 || p.Offset > maxSpan:
			return 0, badLayout("file %d is at offset %d, not a multiple of %d in 0..%d", i, p.Offset, block, int64(maxSpan))
		}
		end = max(end, p.Offset+sizes[i])
	}
	return end, nil
}

// sort builds the per-shard file lists and rejects files that overlap or
// leave gaps: each shard is its files one after the other, each at the
// first 64-byte boundary after the one before.
func (sm *shardMap) sort() error {
	n, k := len(sm.sizes), sm.l.DataShards
	sm.order = make([]int, n)
	sm.start = make([]int, k+1)
	for i := range sm.order {
		sm.order[i] = i
	}
	if len(sm.l.Place) == 0 {
		for s := range sm.start {
			sm.start[s] = s
		}
		return nil
	}
	slices.SortFunc(sm.order, func(a, b int) int {
		pa, pb := sm.l.Place[a], sm.l.Place[b]
		return cmp.Or(cmp.Compare(pa.Shard, pb.Shard), cmp.Compare(pa.Offset, pb.Offset),
			cmp.Compare(sm.sizes[a], sm.sizes[b]), cmp.Compare(a, b))
	})
	for at, i := range sm.order {
		p := sm.l.Place[i]
		sm.start[p.Shard+1] = at + 1
		var want int64 // files follow each other, each at the 64-byte boundary after the one before
		if prev := at - 1; prev >= 0 && sm.l.Place[sm.order[prev]].Shard == p.Shard {
			_, end := sm.span(sm.order[prev])
			want = roundUp(end)
		}
		if p.Offset != want {
			return badLayout("file %d is at offset %d of shard %d, where the file before it puts it at %d", i, p.Offset, p.Shard, want)
		}
	}
	for s := 1; s <= k; s++ {
		sm.start[s] = max(sm.start[s], sm.start[s-1])
	}
	return nil
}

// files is the files of shard s in offset order.
func (sm *shardMap) files(s int) []int { return sm.order[sm.start[s]:sm.start[s+1]] }

// span is the bytes of file i in its shard: [start, end).
func (sm *shardMap) span(i int) (int64, int64) {
	off := sm.l.Placement(i).Offset
	return off, off + sm.sizes[i]
}
