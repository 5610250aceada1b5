package parity

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func equalSizes(n int, size int64) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = size
	}
	return s
}

func TestPlanParityCount(t *testing.T) {
	cases := []struct {
		files  int
		share  float64
		parity int
	}{
		{100, 0.05, 6}, // 6 >= 0.05*106; 5 < 0.05*105
		{100, 0.03, 4}, // 4 >= 0.03*104; 3 < 0.03*103
		{100, 0.2, 25}, // 25 >= 0.2*125 exactly
		{60, 0.05, 4},
		{1, 0.05, 1},
		{1, 0.5, 1},
		{3, 0.5, 3},
		{1000, 0.01, 11}, // 11 >= 10.11; 10 < 10.1
	}
	for _, c := range cases {
		l, err := Plan(equalSizes(c.files, 100), c.share)
		if err != nil {
			t.Fatalf("%d files, share %v: %v", c.files, c.share, err)
		}
		if l.ParityShards != c.parity || l.DataShards != c.files || len(l.Place) != 0 {
			t.Errorf("%d files, share %v: %d+%d shards, %d placements; want %d+%d, none",
				c.files, c.share, l.DataShards, l.ParityShards, len(l.Place), c.files, c.parity)
		}
	}
}

// The parity count is the smallest m with q*m >= p*(n+m) for share p/q,
// computed in integers.
func TestPlanParityCountExact(t *testing.T) {
	for _, q := range []int{100, 1000} {
		for p := 1; 2*p <= q; p += 1 + q/200 {
			share := float64(p) / float64(q)
			for n := 1; n <= 100000; n += 1 + n/20 {
				want := max(1, p*n/(q-p)-1)
				for q*want < p*(n+want) {
					want++
				}
				if got := parityCount(n, share); got != want {
					t.Fatalf("parityCount(%d, %v) = %d, want %d", n, share, got, want)
				}
			}
		}
	}
}

func TestPlanCodes(t *testing.T) {
	l, err := Plan(equalSizes(240, 10), 0.05)
	if err != nil || l.Code != CodeGF8 || l.DataShards+l.ParityShards > 256 {
		t.Fatalf("240 files: %+v, %v; want the GF8 code", l, err)
	}
	l, err = Plan(equalSizes(250, 10), 0.05)
	if err != nil || l.Code != CodeGF16 || l.DataShards != 250 {
		t.Fatalf("250 files: %+v, %v; want the GF16 code, one shard per file", l, err)
	}
	if l.ShardSize != 64 {
		t.Errorf("shard size %d for files of 10 bytes, want 64", l.ShardSize)
	}
}

// Above the code's shard count, files share shards: the guarantee holds, the
// shards come out nearly equal and leopard accepts the shape.
func TestPlanManyFiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	sizes := randomSizes(rng, 70000, 1<<20)
	sizes[123] = 200 << 20
	l, err := Plan(sizes, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	if l.ParityShards != 3685 || l.DataShards != 65536-4096 || l.Code != CodeGF16 {
		t.Fatalf("%d+%d shards, %s; want 3685 parity and 61440 data shards (leopard rounds parity up to 4096)", l.DataShards, l.ParityShards, l.Code)
	}
	if err := l.Validate(sizes); err != nil {
		t.Fatal(err)
	}
	if _, err := newCoder(l, Options{MemoryBudget: 1}); err != nil {
		t.Fatalf("the codec refuses the plan: %v", err)
	}
	var total int64
	for _, s := range sizes {
		total += roundUp(s)
	}
	// largest first onto the emptiest shard: within one (rounded) file of
	// the best, and never below the largest file
	if best := max(int64(200<<20), total/int64(l.DataShards)); l.ShardSize > best+(1<<20)+64 {
		t.Errorf("shard size %d, the best is at least %d", l.ShardSize, best)
	}
}

func TestPlanRefuses(t *testing.T) {
	cases := []struct {
		name  string
		sizes []int64
		share float64
		want  string
	}{
		{"no files", nil, 0.05, "no files"},
		{"zero share", []int64{1}, 0, "outside (0, 0.5]"},
		{"share above half", []int64{1}, 0.6, "outside (0, 0.5]"},
		{"NaN share", []int64{1}, math.NaN(), "outside (0, 0.5]"},
		{"negative size", []int64{1, -1}, 0.05, "file 1 has size -1"},
		{"huge size", []int64{MaxFileSize + 1}, 0.05, "file 0 has size"},
		{"too many files", equalSizes(700000, 1), 0.05, "use a smaller share"},
	}
	for _, c := range cases {
		if _, err := Plan(c.sizes, c.share); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error with %q", c.name, err, c.want)
		}
	}
}

func TestLayoutJSONRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	sizes := randomSizes(rng, 50, 5000)
	for _, limit := range []int{MaxShards, 20} {
		l, err := plan(sizes, 0.1, limit)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		var back Layout
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&back, l) {
			t.Fatalf("%s came back as %+v", b, back)
		}
		if err := back.Validate(sizes); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	b, _ := json.Marshal(&Layout{Code: CodeGF8, DataShards: 2, ParityShards: 1, ShardSize: 64})
	if want := `{"code":"rs-gf8","data_shards":2,"parity_shards":1,"shard_size":64}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
}

func TestValidateRefuses(t *testing.T) {
	sizes := []int64{100, 30, 0, 64}
	good := func() *Layout {
		return &Layout{Code: CodeGF8, DataShards: 2, ParityShards: 1, ShardSize: 192,
			Place: []Placement{{0, 0}, {1, 0}, {1, 64}, {0, 128}}}
	}
	if err := good().Validate(sizes); err != nil {
		t.Fatalf("the good layout: %v", err)
	}
	cases := []struct {
		name   string
		change func(l *Layout)
		sizes  []int64
		want   string
	}{
		{"nil", nil, sizes, "there is no layout"},
		{"no data shards", func(l *Layout) { l.DataShards = 0 }, sizes, "0 data and 1 parity"},
		{"no parity shards", func(l *Layout) { l.ParityShards = 0 }, sizes, "2 data and 0 parity"},
		{"negative parity", func(l *Layout) { l.ParityShards = -5 }, sizes, "2 data and -5 parity"},
		{"more shards than files", func(l *Layout) { l.DataShards = 5 }, sizes, "5 data shards for 4 files"},
		{"too many shards", func(l *Layout) { l.ParityShards = 1 << 40 }, sizes, "more than 65536"},
		{"sum overflows", func(l *Layout) { l.DataShards, l.ParityShards = 3, math.MaxInt }, sizes, "more than 65536"},
		{"unknown code", func(l *Layout) { l.Code = "xor" }, sizes, `code "xor"`},
		{"wrong code", func(l *Layout) { l.Code = CodeGF16 }, sizes, "want \"rs-gf8\""},
		{"shard out of range", func(l *Layout) { l.Place[1].Shard = 2 }, sizes, "file 1 is in shard 2 of 2"},
		{"negative shard", func(l *Layout) { l.Place[1].Shard = -1 }, sizes, "file 1 is in shard -1"},
		{"unaligned offset", func(l *Layout) { l.Place[3].Offset = 130 }, sizes, "offset 130"},
		{"negative offset", func(l *Layout) { l.Place[3].Offset = -64 }, sizes, "offset -64"},
		{"huge offset", func(l *Layout) { l.Place[3].Offset = 1<<62 + 64 }, sizes, "offset 4611686018427387968"},
		{"overlap", func(l *Layout) { l.Place[3].Offset = 64 }, sizes, "file 3 is at offset 64 of shard 0"},
		{"gap", func(l *Layout) { l.Place[3].Offset, l.ShardSize = 192, 256 }, sizes, "file 3 is at offset 192 of shard 0, where the file before it puts it at 128"},
		{"shard size too big", func(l *Layout) { l.ShardSize = 1 << 40 }, sizes, "shard size is 1099511627776 bytes, but its files need 192"},
		{"shard size too small", func(l *Layout) { l.ShardSize = 128 }, sizes, "need 192"},
		{"placements missing", func(l *Layout) { l.Place = l.Place[:3] }, sizes, "3 placements for 4 files"},
		{"no placements", func(l *Layout) { l.Place = nil }, sizes, "no placements, but 2 data shards for 4 files"},
		{"negative size", func(*Layout) {}, []int64{100, 30, -1, 64}, "file 2 has size -1"},
		{"size bigger than placed", func(*Layout) {}, []int64{100, 100, 0, 64}, "file 2 is at offset 64 of shard 1, where the file before it puts it at 128"},
		{"fewer files", func(*Layout) {}, sizes[:1], "2 data shards for 1 files"},
	}
	for _, c := range cases {
		var l *Layout
		if c.change != nil {
			l = good()
			c.change(l)
		}
		err := l.Validate(c.sizes)
		if !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrLayout with %q", c.name, err, c.want)
		}
	}
	leo := &Layout{Code: CodeGF16, DataShards: 65530, ParityShards: 6, ShardSize: 64}
	if err := leo.Validate(equalSizes(65530, 1)); err == nil || !strings.Contains(err.Error(), "leopard cannot encode") {
		t.Errorf("65530+6 shards: %v, want leopard's refusal", err)
	}
}
