package parity

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cofferhq/coffer/internal/testutil/allocs"
)

// randomLayout lays files out in k shards in random order, each file at the
// first 64-byte boundary after the one before: any such layout is valid.
func randomLayout(rng *rand.Rand, sizes []int64, k, m int) *Layout {
	used := make([]int64, k)
	place := make([]Placement, len(sizes))
	for _, i := range rng.Perm(len(sizes)) {
		s := rng.IntN(k)
		if i < k {
			s = i // no shard empty
		}
		place[i] = Placement{Shard: s, Offset: used[s]}
		used[s] += roundUp(sizes[i])
	}
	return &Layout{Code: codeFor(k, m), DataShards: k, ParityShards: m, ShardSize: shardSize(slices.Max(used)), Place: place}
}

// bruteCheck counts the unknown shards of every 64-byte column directly.
func bruteCheck(l *Layout, sizes []int64, damaged []int) (most int, files []int) {
	n := len(sizes)
	touches := func(i int, b int64) bool {
		if i >= n {
			return true
		}
		p := l.Placement(i)
		return sizes[i] > 0 && p.Offset < (b+1)*block && p.Offset+sizes[i] > b*block
	}
	involved := map[int]bool{}
	for b := range l.ShardSize / block {
		unknown := map[int]bool{}
		for _, i := range damaged {
			if touches(i, b) {
				unknown[shardOf(l, n, i)] = true
			}
		}
		most = max(most, len(unknown))
		if len(unknown) > l.ParityShards {
			for _, i := range damaged {
				if touches(i, b) {
					involved[i] = true
				}
			}
		}
	}
	for i := range involved {
		files = append(files, i)
	}
	slices.Sort(files)
	return most, files
}

func shardOf(l *Layout, n, i int) int {
	if i >= n {
		return l.DataShards + i - n
	}
	return l.Placement(i).Shard
}

func TestCheckAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 15))
	refused := 0
	const trials = 400
	for trial := range trials {
		n := 1 + rng.IntN(12)
		sizes := randomSizes(rng, n, 300)
		k, m := 1+rng.IntN(n), 1+rng.IntN(4)
		l := randomLayout(rng, sizes, k, m)
		if err := l.Validate(sizes); err != nil {
			t.Fatalf("trial %d: a valid layout refused: %v", trial, err)
		}
		var damaged []int
		for i := range n + m {
			if rng.IntN(3) == 0 {
				damaged = append(damaged, i)
			}
		}
		most, files := bruteCheck(l, sizes, damaged)
		err := Check(l, sizes, damaged)
		if most <= m {
			if err != nil {
				t.Fatalf("trial %d: at most %d unknown of %d parity, Check says %v", trial, most, m, err)
			}
			repairAll(t, l, sizes, damaged, rng)
			continue
		}
		refused++
		var u *Unrepairable
		if !errors.As(err, &u) || u.Unknown != most || u.Parity != m || !slices.Equal(u.Files, files) {
			t.Fatalf("trial %d: Check says %v, want %d unknown, files %v", trial, err, most, files)
		}
	}
	if refused < trials/10 || refused > trials*9/10 {
		t.Errorf("%d of %d trials refused: the test does not cover both sides", refused, trials)
	}
}

// repairAll encodes files of the sizes, loses the damaged ones and repairs
// them: what Check accepts, Repair does.
func repairAll(t *testing.T, l *Layout, sizes []int64, damaged []int, rng *rand.Rand) {
	t.Helper()
	ts := newTestSeed(t, sizes, l, rng, Options{MemoryBudget: int64(rng.IntN(4096))})
	for _, i := range damaged {
		ts.damage(i, deleteFile, rng)
	}
	if err := ts.repair(Options{MemoryBudget: int64(rng.IntN(4096))}); err != nil {
		t.Fatalf("Repair of %v in %+v: %v", damaged, l, err)
	}
}

// Outside numbers never size an allocation: layouts with huge counts and
// offsets are refused without allocating more than the files' own lists.
func TestValidateAllocatesLittle(t *testing.T) {
	sizes := []int64{10, 20, 30}
	bad := []*Layout{
		{Code: CodeGF16, DataShards: 1 << 40, ParityShards: 1 << 40, ShardSize: 1 << 62},
		{Code: CodeGF16, DataShards: 3, ParityShards: 65533, ShardSize: 1 << 62},
		{Code: CodeGF8, DataShards: 3, ParityShards: 1, ShardSize: 1 << 62, Place: []Placement{{0, 0}, {1, 1 << 62}, {2, 0}}},
		{Code: CodeGF8, DataShards: 3, ParityShards: 1, ShardSize: 1 << 62},
		{Code: CodeGF8, DataShards: 2, ParityShards: 1, ShardSize: 64, Place: []Placement{{0, 0}, {1, 0}, {1, 1 << 40}}},
	}
	for _, l := range bad {
		var err error
		got := allocs.Least(func() { err = Check(l, sizes, []int{0, 1 << 40}) })
		if err == nil || got > 4096 {
			t.Errorf("%+v: %v after %d bytes allocated", l, err, got)
		}
	}
}

// fuzzInput is a layout as a manifest would carry it, the files' sizes and
// a damaged set.
type fuzzInput struct {
	Layout  *Layout `json:"layout"`
	Sizes   []int64 `json:"sizes"`
	Damaged []int   `json:"damaged"`
}

func FuzzLayout(f *testing.F) {
	rng := rand.New(rand.NewPCG(16, 16))
	for _, limit := range []int{MaxShards, 6} {
		sizes := randomSizes(rng, 9, 200)
		l, err := plan(sizes, 0.2, limit)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := json.Marshal(fuzzInput{l, sizes, []int{0, 3, 9}})
		f.Add(b)
	}
	f.Add([]byte(`{"layout":{"code":"rs-gf8","data_shards":2,"parity_shards":1,"shard_size":128,"place":[{"shard":0,"offset":0},{"shard":1,"offset":0},{"shard":0,"offset":64}]},"sizes":[50,128,64],"damaged":[1]}`))
	f.Add([]byte(`{"layout":{"code":"leopard-gf16","data_shards":65530,"parity_shards":6,"shard_size":64},"sizes":[1],"damaged":[-1]}`))
	f.Add([]byte(`{"layout":{"code":"rs-gf8","data_shards":1,"parity_shards":1,"shard_size":9223372036854775807},"sizes":[9223372036854775807]}`))
	f.Add([]byte(`{"layout":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var in fuzzInput
		if json.Unmarshal(data, &in) != nil {
			return
		}
		err := in.Layout.Validate(in.Sizes)
		cerr := Check(in.Layout, in.Sizes, in.Damaged)
		if err != nil {
			if !errors.Is(err, ErrLayout) || cerr == nil {
				t.Fatalf("Validate: %v; Check: %v", err, cerr)
			}
			return
		}
		var total int64
		for _, s := range in.Sizes {
			total += s
		}
		if cerr != nil || total > 1<<16 || len(in.Sizes) > 64 || in.Layout.ParityBytes() > 1<<16 {
			return
		}
		// a valid layout of small files: what Check accepts, Repair does
		ts := newTestSeed(t, in.Sizes, in.Layout, rng, Options{MemoryBudget: 4096})
		for _, i := range in.Damaged {
			ts.damage(i, deleteFile, rng)
		}
		if err := ts.repair(Options{}); err != nil {
			t.Fatalf("Repair of %v: %v", in.Damaged, err)
		}
	})
}

// Repair writes only where it must: out receives nothing for an intact
// file, and every repaired file exactly once per window it spans.
func TestRepairWritesOnlyDamaged(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 17))
	sizes := randomSizes(rng, 20, 4000)
	l, err := Plan(sizes, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestSeed(t, sizes, l, rng, Options{})
	damaged := []int{1, 4}
	written := map[int]int{}
	out := func(i int) (io.WriterAt, error) { written[i]++; return &memFile{}, nil }
	if err := Repair(context.Background(), l, sizes, damaged, ts.open(damaged), out, Options{}); err != nil {
		t.Fatal(err)
	}
	for i := range written {
		if !slices.Contains(damaged, i) {
			t.Errorf("intact file %d written", i)
		}
	}
	for _, i := range damaged {
		if written[i] == 0 {
			t.Errorf("damaged file %d not written", i)
		}
	}
}
