package parity

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// pickDamage damages up to count distinct files of ts: the largest data
// files first when largest is set, else random ones, parity files included.
func pickDamage(ts *testSeed, rng *rand.Rand, count int, largest bool) []int {
	all := len(ts.files)
	order := rng.Perm(all)
	if largest {
		slices.SortStableFunc(order, func(a, b int) int { return compareSize(ts, b) - compareSize(ts, a) })
	}
	picked := order[:min(count, all)]
	for _, i := range picked {
		ts.damage(i, damage(rng.IntN(3)), rng)
	}
	return picked
}

func compareSize(ts *testSeed, i int) int {
	if i >= len(ts.sizes) {
		return -1
	}
	return int(ts.sizes[i] / 64)
}

func TestRoundTrip(t *testing.T) {
	cases := []struct {
		name    string
		sizes   []int64
		share   float64
		largest bool
		budget  int64
	}{
		{"one file", []int64{1000}, 0.05, false, 0},
		{"one empty file", []int64{0}, 0.05, false, 0},
		{"empty files", []int64{0, 0, 0, 0}, 0.25, false, 0},
		{"sizes of 64", []int64{64, 128, 640, 64}, 0.3, false, 512},
		{"random, small windows", randomSizes(rand.New(rand.NewPCG(1, 1)), 60, 20000), 0.05, false, 4096},
		{"random, largest damaged", randomSizes(rand.New(rand.NewPCG(2, 2)), 40, 30000), 0.1, true, 64 << 10},
		{"random, default budget", randomSizes(rand.New(rand.NewPCG(3, 3)), 100, 5000), 0.2, false, 0},
		{"window of 64", randomSizes(rand.New(rand.NewPCG(4, 4)), 20, 3000), 0.2, false, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(len(c.sizes)), 7))
			l, err := Plan(c.sizes, c.share)
			if err != nil {
				t.Fatal(err)
			}
			for round := range 5 {
				ts := newTestSeed(t, c.sizes, l, rng, Options{MemoryBudget: c.budget})
				picked := pickDamage(ts, rng, l.ParityShards, c.largest && round%2 == 0)
				if d := ts.damaged(); len(d) != len(picked) {
					t.Fatalf("damaged %v, but the hashes find %v", picked, d)
				}
				if err := Check(l, c.sizes, ts.damaged()); err != nil {
					t.Fatalf("Check with %d damaged of %d parity: %v", len(picked), l.ParityShards, err)
				}
				if err := ts.repair(Options{MemoryBudget: c.budget, Readers: 1 + round}); err != nil {
					t.Fatalf("Repair of %v: %v", picked, err)
				}
			}
		})
	}
}

// refuses asserts that err is an *Unrepairable naming exactly files.
func refuses(t *testing.T, err error, files []int, parity int) *Unrepairable {
	t.Helper()
	var u *Unrepairable
	if !errors.As(err, &u) {
		t.Fatalf("got %v, want *Unrepairable", err)
	}
	if !slices.Equal(u.Files, files) || u.Parity != parity || u.Unknown <= parity {
		t.Fatalf("Unrepairable{Files %v, Unknown %d, Parity %d}, want files %v, parity %d, more unknown",
			u.Files, u.Unknown, u.Parity, files, parity)
	}
	return u
}

func TestRefusesOverlappingDamage(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	sizes := make([]int64, 30)
	for i := range sizes {
		sizes[i] = 100 + rng.Int64N(5000)
	}
	l, err := Plan(sizes, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestSeed(t, sizes, l, rng, Options{})
	// one parity file and M data files: every file starts at column 0
	want := []int{2, 3, 5, 7, len(sizes) + 1}
	for _, i := range want {
		ts.damage(i, damage(rng.IntN(3)), rng)
	}
	if l.ParityShards != len(want)-1 {
		t.Fatalf("parity shards %d, the test wants %d", l.ParityShards, len(want)-1)
	}
	u := refuses(t, Check(l, sizes, ts.damaged()), want, l.ParityShards)
	if u.Unknown != len(want) {
		t.Errorf("Unknown %d, want %d", u.Unknown, len(want))
	}
	// Repair refuses the same way and writes nothing (ts.repair checks).
	refuses(t, ts.repair(Options{}), want, l.ParityShards)
	if msg := u.Error(); !contains(msg, "files involved: 2, 3, 5, 7, 31;") || !contains(msg, "4 parity shards") {
		t.Errorf("message %q does not name the files and the parity", msg)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// A damaged data file only blocks its own columns: files of one shard, or
// of shards at different columns, can all be damaged together.
func TestRepairsMoreThanParityWhenColumnsDiffer(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	sizes := make([]int64, 40)
	for i := range sizes {
		sizes[i] = 64 + rng.Int64N(2000)
	}
	l, err := plan(sizes, 0.05, 10) // M = 3, 7 data shards for 40 files
	if err != nil {
		t.Fatal(err)
	}
	if l.DataShards != 7 || l.ParityShards != 3 || len(l.Place) != len(sizes) {
		t.Fatalf("layout %d+%d shards, %d placements; the test wants 7+3 and one per file", l.DataShards, l.ParityShards, len(l.Place))
	}
	ts := newTestSeed(t, sizes, l, rng, Options{MemoryBudget: 10 * 256})
	// every file of shards 0 and 1 and one parity file: 3 shards unknown
	// at most, with far more than 3 files damaged
	var damaged []int
	for i, p := range l.Place {
		if p.Shard <= 1 {
			damaged = append(damaged, i)
		}
	}
	damaged = append(damaged, len(sizes)+2)
	for _, i := range damaged {
		ts.damage(i, damage(rng.IntN(3)), rng)
	}
	if len(damaged) <= l.ParityShards+2 {
		t.Fatalf("only %d files damaged", len(damaged))
	}
	if err := ts.repair(Options{MemoryBudget: 10 * 256}); err != nil {
		t.Fatalf("Repair of %d files in two shards and one parity file: %v", len(damaged), err)
	}
	// Damaging the first file of two more shards overlaps at column 0.
	more := []int{firstFile(l, 2), firstFile(l, 3)}
	for _, i := range more {
		ts.damage(i, overwriteBytes, rng)
	}
	err = Check(l, sizes, ts.damaged())
	var u *Unrepairable
	if !errors.As(err, &u) || u.Unknown != 5 {
		t.Fatalf("Check: %v, want 5 unknown shards", err)
	}
	if !slices.Contains(u.Files, more[0]) || !slices.Contains(u.Files, more[1]) || !slices.Contains(u.Files, len(sizes)+2) {
		t.Errorf("files involved %v do not include %v and the parity file", u.Files, more)
	}
}

func firstFile(l *Layout, shard int) int {
	for i, p := range l.Place {
		if p.Shard == shard && p.Offset == 0 {
			return i
		}
	}
	return -1
}

// The issue's situation: about 60 files, any 5%: damage of 3% repairs,
// damage of 20% is refused, naming the files.
func TestIssueShares(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	sizes := make([]int64, 60)
	for i := range sizes {
		sizes[i] = 1 + rng.Int64N(40000)
	}
	l, err := Plan(sizes, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	total := len(sizes) + l.ParityShards
	if l.ParityShards != 4 {
		t.Fatalf("parity shards %d, want 4 (4 >= 0.05*64)", l.ParityShards)
	}
	for _, c := range []struct {
		share float64
		ok    bool
	}{{0.03, true}, {0.05, true}, {0.20, false}} {
		ts := newTestSeed(t, sizes, l, rng, Options{MemoryBudget: 1 << 20})
		count := int(c.share*float64(total) + 0.999)
		picked := pickDamage(ts, rng, count, false)
		err := ts.repair(Options{})
		if c.ok && err != nil {
			t.Errorf("damage of %v%% (%d files): %v", c.share*100, count, err)
		}
		if !c.ok {
			slices.Sort(picked)
			refuses(t, err, picked, l.ParityShards)
		}
	}
}
