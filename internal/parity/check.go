package parity

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Unrepairable says that damaged files leave more shards unknown in some
// bytes than the parity can rebuild.
type Unrepairable struct {
	// Files are the damaged files that share bytes with too many others,
	// in ascending order; parity file j is number len(sizes)+j.
	Files []int
	// Unknown is the most shards unknown at once in any 64-byte column.
	Unknown int
	// Parity is the number of parity shards: the most unknown shards a
	// column can have and still be rebuilt.
	Parity int
}

func (e *Unrepairable) Error() string {
	const shown = 20
	names := make([]string, 0, min(len(e.Files), shown))
	for _, f := range e.Files[:min(len(e.Files), shown)] {
		names = append(names, strconv.Itoa(f))
	}
	list := strings.Join(names, ", ")
	if len(e.Files) > shown {
		list += fmt.Sprintf(" and %d more", len(e.Files)-shown)
	}
	return fmt.Sprintf("parity cannot repair the damage: %d shards are unknown in the same bytes, and %d parity shards rebuild at most %d; damaged files involved: %s; get those files from another copy of the seed or export a new seed",
		e.Unknown, e.Parity, e.Parity, list)
}

// Check reports, without reading anything, whether the damaged files
// (indexes into sizes; parity file j is len(sizes)+j) can be rebuilt: nil,
// an *Unrepairable, or an error for a layout that does not fit or an index
// out of range.
func Check(l *Layout, sizes []int64, damaged []int) error {
	sm, err := l.index(sizes)
	if err != nil {
		return err
	}
	d, err := sm.damagedSet(damaged)
	if err != nil {
		return err
	}
	return sm.check(d)
}

// damagedSet checks the indexes and returns them sorted without repeats.
func (sm *shardMap) damagedSet(damaged []int) ([]int, error) {
	all := len(sm.sizes) + sm.l.ParityShards
	for _, i := range damaged {
		if i < 0 || i >= all {
			return nil, fmt.Errorf("parity: damaged file %d is out of range: the seed has %d files and %d parity files (numbered from %d)",
				i, len(sm.sizes), sm.l.ParityShards, len(sm.sizes))
		}
	}
	d := slices.Clone(damaged)
	slices.Sort(d)
	return slices.Compact(d), nil
}

// extent is the 64-byte blocks [start, end) that damaged file makes unknown.
type extent struct {
	start, end int64
	file       int
}

// extents are the blocks the damaged files make unknown: a data file its
// own blocks, a parity file its whole shard. Empty files make none.
func (sm *shardMap) extents(damaged []int) []extent {
	var out []extent
	for _, i := range damaged {
		if i >= len(sm.sizes) {
			out = append(out, extent{0, sm.l.ShardSize, i})
			continue
		}
		if start, end := sm.span(i); end > start {
			out = append(out, extent{start, roundUp(end), i})
		}
	}
	return out
}

// edge is where an extent starts (+1) or ends (-1).
type edge struct {
	at    int64
	delta int
}

// edges are the extents' starts and ends in order, ends before starts at
// the same byte.
func edges(ext []extent) []edge {
	e := make([]edge, 0, 2*len(ext))
	for _, x := range ext {
		e = append(e, edge{x.start, +1}, edge{x.end, -1})
	}
	slices.SortFunc(e, func(a, b edge) int { return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.delta, b.delta)) })
	return e
}

// check sweeps the damaged extents column by column. Extents in one shard
// never overlap, so the number of extents over a column is the number of
// its unknown shards.
func (sm *shardMap) check(damaged []int) error {
	ext := sm.extents(damaged)
	var over []extent // columns with more unknown shards than parity shards
	most, now, open := 0, 0, false
	for _, e := range edges(ext) {
		now += e.delta
		most = max(most, now)
		switch {
		case now > sm.l.ParityShards && !open:
			over, open = append(over, extent{start: e.at}), true
		case now <= sm.l.ParityShards && open:
			over[len(over)-1].end, open = e.at, false
		}
	}
	if len(over) == 0 {
		return nil
	}
	return &Unrepairable{Files: involved(ext, over), Unknown: most, Parity: sm.l.ParityShards}
}

// involved is the files of the extents that overlap any of the regions
// (sorted, disjoint).
func involved(ext []extent, over []extent) []int {
	var files []int
	for _, x := range ext {
		// the first region that ends after x starts
		at, _ := slices.BinarySearchFunc(over, x.start, func(r extent, start int64) int {
			return cmp.Compare(r.end, start+1)
		})
		if at < len(over) && over[at].start < x.end {
			files = append(files, x.file)
		}
	}
	slices.Sort(files)
	return files
}
