package parity

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"math"
	"slices"
)

const (
	// MaxShards is the most shards, data and parity, one code can have.
	MaxShards = 65536
	// MaxFileSize is the largest file a layout can hold.
	MaxFileSize = 1 << 46
	// CodeGF8 is klauspost/reedsolomon's Vandermonde code over GF(2^8): at
	// most 256 shards in all.
	CodeGF8 = "rs-gf8"
	// CodeGF16 is klauspost/reedsolomon's leopard code over GF(2^16): more
	// than 256 shards.
	CodeGF16 = "leopard-gf16"

	block   = 64  // the unit of a shard: leopard's symbols come in 64-byte blocks
	gf8Max  = 256 // the most shards of CodeGF8
	maxSpan = MaxShards * int64(MaxFileSize)
)

// ErrLayout is wrapped by every error of a layout that does not fit its files.
var ErrLayout = errors.New("parity layout does not fit the seed's files")

// Placement is where a file lies: in data shard Shard from byte Offset on.
type Placement struct {
	Shard  int   `json:"shard"`
	Offset int64 `json:"offset"`
}

// Layout is the shape of a seed's parity. The manifest stores it as JSON.
// Place is empty when every file has its own shard (file i is shard i at
// offset 0), the usual case.
type Layout struct {
	Code         string      `json:"code"`
	DataShards   int         `json:"data_shards"`
	ParityShards int         `json:"parity_shards"`
	ShardSize    int64       `json:"shard_size"`
	Place        []Placement `json:"place,omitempty"`
}

// Placement is where file i lies. i must be below the number of files of a
// validated layout.
func (l *Layout) Placement(i int) Placement {
	if len(l.Place) == 0 {
		return Placement{Shard: i}
	}
	return l.Place[i]
}

// ParityBytes is the size of all parity files together.
func (l *Layout) ParityBytes() int64 { return int64(l.ParityShards) * l.ShardSize }

// Plan lays out files of the given sizes so that any share of all files
// (parity files included, e.g. 0.05) can be damaged and rebuilt.
func Plan(sizes []int64, share float64) (*Layout, error) {
	return plan(sizes, share, MaxShards)
}

// plan is Plan with the most shards a code may have as a parameter, so
// tests can reach layouts with fewer shards than files on small sets.
func plan(sizes []int64, share float64, limit int) (*Layout, error) {
	n := len(sizes)
	if n == 0 {
		return nil, errors.New("parity: no files to protect; a seed holds at least one file")
	}
	if !(share > 0 && share <= 0.5) {
		return nil, fmt.Errorf("parity: share %v is outside (0, 0.5]: give the share of the seed's files it must survive losing, e.g. 0.05", share)
	}
	if err := checkSizes(sizes); err != nil {
		return nil, err
	}
	m := parityCount(n, share)
	k := n
	if n+m > min(limit, gf8Max) {
		k = min(n, maxDataShards(m, limit))
	}
	if k < 1 {
		return nil, fmt.Errorf("parity: %d files with share %v need %d parity files, more than one code of %d shards can hold: use a smaller share", n, share, m, limit)
	}
	l := &Layout{Code: codeFor(k, m), DataShards: k, ParityShards: m}
	if k == n {
		l.ShardSize = shardSize(slices.Max(sizes))
		return l, nil
	}
	l.Place, l.ShardSize = fill(sizes, k)
	return l, nil
}

// parityCount is the smallest m with m >= share*(n+m). A share is meant as
// a decimal (0.14 is 14%), so the products are rounded down by a relative
// 1e-9 before comparing: 0.14*50 is 7.000000000000001 in floating point.
func parityCount(n int, share float64) int {
	need := func(m int) float64 { return share * float64(n+m) * (1 - 1e-9) }
	m := max(1, int(math.Ceil(share*float64(n)/(1-share))))
	for m > 1 && float64(m-1) >= need(m-1) {
		m--
	}
	for float64(m) < need(m) {
		m++
	}
	return m
}

// maxDataShards is the most data shards a code with m parity shards and at
// most limit shards in all can have. Above 256 shards leopard also needs the
// data shards plus m rounded up to a power of two to stay within the field.
func maxDataShards(m, limit int) int {
	if limit <= gf8Max {
		return limit - m
	}
	return limit - ceilPow2(m)
}

func ceilPow2(n int) int {
	p := 1
	for p < n {
		p *= 2
	}
	return p
}

func codeFor(k, m int) string {
	if k+m <= gf8Max {
		return CodeGF8
	}
	return CodeGF16
}

// shardSize is the shard size for a longest shard of end bytes.
func shardSize(end int64) int64 { return max(block, roundUp(end)) }

func roundUp(n int64) int64 { return (n + block - 1) / block * block }

func checkSizes(sizes []int64) error {
	for i, s := range sizes {
		if s < 0 || s > MaxFileSize {
			return fmt.Errorf("%w: file %d has size %d, outside 0..%d", ErrLayout, i, s, int64(MaxFileSize))
		}
	}
	return nil
}

// fill places files into k shards, largest first onto the emptiest shard
// (ties to the lower index), each at a 64-byte boundary. It returns the
// placements and the shard size.
func fill(sizes []int64, k int) ([]Placement, int64) {
	order := make([]int, len(sizes))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(sizes[b], sizes[a]) })
	h := make(fillHeap, k)
	for s := range h {
		h[s] = shardFill{shard: s}
	}
	place := make([]Placement, len(sizes))
	var longest int64
	for _, i := range order {
		place[i] = Placement{Shard: h[0].shard, Offset: h[0].used}
		h[0].used += roundUp(sizes[i])
		longest = max(longest, h[0].used)
		heap.Fix(&h, 0)
	}
	return place, shardSize(longest)
}

type shardFill struct {
	shard int
	used  int64
}

// fillHeap orders shards by bytes used, then by index.
type fillHeap []shardFill

func (h fillHeap) Len() int { return len(h) }
func (h fillHeap) Less(a, b int) bool {
	if h[a].used != h[b].used {
		return h[a].used < h[b].used
	}
	return h[a].shard < h[b].shard
}
func (h fillHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *fillHeap) Push(x any)   { *h = append(*h, x.(shardFill)) }
func (h *fillHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
