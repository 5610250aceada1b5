package parity

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
)

// Both codes, with one file per shard and with shared shards.
func TestCodes(t *testing.T) {
	cases := []struct {
		name   string
		files  int
		limit  int
		code   string
		shared bool
	}{
		{"GF8, a shard per file", 100, MaxShards, CodeGF8, false},
		{"GF8, shared shards", 100, 40, CodeGF8, true},
		{"GF16, a shard per file", 300, MaxShards, CodeGF16, false},
		{"GF16, shared shards", 600, 400, CodeGF16, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(c.files), uint64(c.limit)))
			sizes := randomSizes(rng, c.files, 300)
			l, err := plan(sizes, 0.05, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			if l.Code != c.code || (len(l.Place) > 0) != c.shared {
				t.Fatalf("%s with %d placements, want %s, shared %v", l.Code, len(l.Place), c.code, c.shared)
			}
			o := Options{MemoryBudget: int64(l.DataShards+l.ParityShards) * 128}
			for range 3 {
				ts := newTestSeed(t, sizes, l, rng, o)
				pickDamage(ts, rng, l.ParityShards, false)
				if err := ts.repair(o); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// The parity does not depend on the window: column windows of any size
// give the same bytes.
func TestEncodeWindowIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	sizes := randomSizes(rng, 30, 9000)
	l, err := plan(sizes, 0.1, 12)
	if err != nil {
		t.Fatal(err)
	}
	var first [][]byte
	for _, budget := range []int64{1, 64 * 15 * 3, 1 << 20} {
		ts := newTestSeed(t, sizes, l, rand.New(rand.NewPCG(11, 11)), Options{MemoryBudget: budget, Readers: 3})
		for j := range l.ParityShards {
			got := ts.files[len(sizes)+j].data
			if first == nil || len(first) <= j {
				first = append(first, got)
			} else if !bytes.Equal(first[j], got) {
				t.Fatalf("budget %d gives other parity in file %d", budget, j)
			}
		}
	}
}

func TestProgress(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	sizes := randomSizes(rng, 25, 7000)
	l, err := Plan(sizes, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	var read, calls int64
	o := Options{MemoryBudget: 4096, Progress: func(n int64) { read += n; calls++ }}
	ts := newTestSeed(t, sizes, l, rng, o)
	var total int64
	for _, s := range sizes {
		total += s
	}
	if read != total || calls < 2 {
		t.Errorf("Encode reported %d bytes in %d calls, want %d in several", read, calls, total)
	}
	damaged := pickDamage(ts, rng, l.ParityShards, true)
	var want int64
	for _, i := range damaged {
		if i < len(sizes) {
			want += sizes[i]
		}
	}
	read = 0
	if err := ts.repair(o); err != nil || read != want {
		t.Errorf("Repair: %v, reported %d bytes, want %d", err, read, want)
	}
}

// closeCounter is a file that counts its closes and can fail them.
type closeCounter struct {
	*memFile
	closes *atomic.Int64
	fail   error
}

func (c closeCounter) Close() error { c.closes.Add(1); return c.fail }

func TestEncodeClosesAndReportsErrors(t *testing.T) {
	sizes := []int64{3000, 10, 0, 5000}
	l, err := Plan(sizes, 0.3)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]*memFile, len(sizes))
	for i, s := range sizes {
		data[i] = &memFile{data: bytes.Repeat([]byte{byte(i + 1)}, int(s))}
	}
	var opened, closed atomic.Int64
	open := func(i int) (io.ReaderAt, error) {
		opened.Add(1)
		return closeCounter{data[i], &closed, nil}, nil
	}
	parity := func(j int) (io.WriterAt, error) { return closeCounter{&memFile{}, &closed, nil}, nil }
	o := Options{MemoryBudget: 1024}
	if err := Encode(context.Background(), l, sizes, open, parity, o); err != nil {
		t.Fatal(err)
	}
	windows := (l.ShardSize + o.window(l) - 1) / o.window(l)
	if closed.Load() != opened.Load()+windows*int64(l.ParityShards) || opened.Load() == 0 {
		t.Errorf("%d opened, %d closed over %d windows", opened.Load(), closed.Load(), windows)
	}

	short := func(i int) (io.ReaderAt, error) {
		if i == 3 {
			return bytes.NewReader(data[3].data[:4000]), nil
		}
		return data[i], nil
	}
	err = Encode(context.Background(), l, sizes, short, parity, o)
	if !errors.Is(err, ErrShortFile) || !strings.Contains(err.Error(), "file 3 ends at byte 4000") {
		t.Errorf("short file: %v", err)
	}
	missing := func(i int) (io.ReaderAt, error) { return nil, fs.ErrNotExist }
	if err := Encode(context.Background(), l, sizes, missing, parity, o); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "opening file") {
		t.Errorf("missing file: %v", err)
	}
	nilReader := func(int) (io.ReaderAt, error) { return nil, nil }
	if err := Encode(context.Background(), l, sizes, nilReader, parity, o); err == nil || !strings.Contains(err.Error(), "no reader given") {
		t.Errorf("nil reader: %v", err)
	}
	nilWriter := func(int) (io.WriterAt, error) { return nil, nil }
	if err := Encode(context.Background(), l, sizes, open, nilWriter, o); err == nil || !strings.Contains(err.Error(), "parity file 0: no writer given") {
		t.Errorf("nil writer: %v", err)
	}
	full := errors.New("disk full")
	failClose := func(j int) (io.WriterAt, error) { return closeCounter{&memFile{}, &closed, full}, nil }
	if err := Encode(context.Background(), l, sizes, open, failClose, o); !errors.Is(err, full) || !strings.Contains(err.Error(), "writing parity file 0") {
		t.Errorf("failing close: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Encode(ctx, l, sizes, open, parity, o); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if err := Encode(context.Background(), l, sizes[:3], open, parity, o); !errors.Is(err, ErrLayout) {
		t.Errorf("wrong sizes: %v", err)
	}
}

func TestRepairRefusesBadInput(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 13))
	sizes := []int64{500, 0, 700}
	l, err := Plan(sizes, 0.25)
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestSeed(t, sizes, l, rng, Options{})
	noWrite := func(i int) (io.WriterAt, error) {
		t.Errorf("file %d written", i)
		return &memFile{}, nil
	}
	for _, d := range [][]int{{-1}, {3 + l.ParityShards}} {
		err := Repair(context.Background(), l, sizes, d, ts.open(nil), noWrite, Options{})
		if err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("damaged %v: %v", d, err)
		}
		if err := Check(l, sizes, d); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("Check of %v: %v", d, err)
		}
	}
	// a known file that turns out short: the caller's list was wrong
	ts.files[2].data = ts.files[2].data[:100]
	out := func(i int) (io.WriterAt, error) { return &memFile{}, nil }
	err = Repair(context.Background(), l, sizes, []int{0}, ts.open([]int{0}), out, Options{})
	if !errors.Is(err, ErrShortFile) || !strings.Contains(err.Error(), "file 2") {
		t.Errorf("short intact file: %v", err)
	}
	// a repaired file that cannot be written
	ts.files[2].data = ts.files[2].data[:700]
	full := errors.New("disk full")
	failing := func(i int) (io.WriterAt, error) { return nil, full }
	err = Repair(context.Background(), l, sizes, []int{0}, ts.open([]int{0}), failing, Options{})
	if !errors.Is(err, full) || !strings.Contains(err.Error(), "writing repaired file 0") {
		t.Errorf("failing writer: %v", err)
	}
	// damaged parity and empty files only: nothing to read
	var wrote []int
	record := func(i int) (io.WriterAt, error) { wrote = append(wrote, i); return &memFile{}, nil }
	none := func(i int) (io.ReaderAt, error) { t.Errorf("file %d read", i); return nil, fs.ErrNotExist }
	if err := Repair(context.Background(), l, sizes, []int{1, 1, 3}, none, record, Options{}); err != nil || len(wrote) != 1 || wrote[0] != 1 {
		t.Errorf("empty file and parity damaged: %v, wrote %v", err, wrote)
	}
}

// The largest shape: 65536 shards in the leopard code, files sharing shards,
// as many damaged files as parity files.
func TestMaxShards(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes 65125 shards")
	}
	rng := rand.New(rand.NewPCG(14, 14))
	sizes := randomSizes(rng, 70000, 100)
	l, err := Plan(sizes, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	if l.DataShards+ceilPow2(l.ParityShards) != MaxShards || len(l.Place) == 0 {
		t.Fatalf("%d+%d shards, want the most leopard takes, shared", l.DataShards, l.ParityShards)
	}
	ts := newTestSeed(t, sizes, l, rng, Options{})
	pickDamage(ts, rng, l.ParityShards, false)
	if err := ts.repair(Options{Readers: 2}); err != nil {
		t.Fatal(err)
	}
}
