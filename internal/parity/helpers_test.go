package parity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"sync"
	"testing"
)

// memFile is a file in memory that can be read and written at offsets.
type memFile struct {
	mu   sync.Mutex
	data []byte
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.NewReader(f.data).ReadAt(p, off)
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(f.data)) {
		f.data = append(f.data, make([]byte, end-int64(len(f.data)))...)
	}
	return copy(f.data[off:], p), nil
}

// testSeed is a set of data files with their parity, as an export leaves
// them, and the hashes a manifest would record.
type testSeed struct {
	t      testing.TB
	sizes  []int64
	l      *Layout
	files  []*memFile // data files then parity files; nil: deleted
	hashes [][32]byte
}

// newTestSeed makes files of the given sizes with random bytes and encodes
// their parity.
func newTestSeed(t testing.TB, sizes []int64, l *Layout, rng *rand.Rand, o Options) *testSeed {
	t.Helper()
	ts := &testSeed{t: t, sizes: sizes, l: l}
	for _, s := range sizes {
		b := make([]byte, s)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		ts.files = append(ts.files, &memFile{data: b})
	}
	for range l.ParityShards {
		ts.files = append(ts.files, &memFile{})
	}
	if err := Encode(context.Background(), l, sizes, ts.open(nil), ts.parityWriter(), o); err != nil {
		t.Fatalf("Encode: %v", err)
	}
	for j := range l.ParityShards {
		if got := len(ts.files[len(sizes)+j].data); int64(got) != l.ShardSize {
			t.Fatalf("parity file %d has %d bytes, want the shard size %d", j, got, l.ShardSize)
		}
	}
	for _, f := range ts.files {
		ts.hashes = append(ts.hashes, sha256.Sum256(f.data))
	}
	return ts
}

func (ts *testSeed) parityWriter() WriteFunc {
	return func(j int) (io.WriterAt, error) { return ts.files[len(ts.sizes)+j], nil }
}

// open reads the seed's files; it fails the test when asked for a file in
// forbidden (one known to be damaged).
func (ts *testSeed) open(forbidden []int) OpenFunc {
	bad := map[int]bool{}
	for _, f := range forbidden {
		bad[f] = true
	}
	return func(i int) (io.ReaderAt, error) {
		if bad[i] {
			ts.t.Errorf("file %d was opened, but it is damaged", i)
		}
		if i < 0 || i >= len(ts.files) {
			return nil, fmt.Errorf("no file %d", i)
		}
		if ts.files[i] == nil {
			return nil, fs.ErrNotExist
		}
		return ts.files[i], nil
	}
}

type damage int

const (
	deleteFile damage = iota
	truncateFile
	overwriteBytes
)

// damage damages file i the given way.
func (ts *testSeed) damage(i int, how damage, rng *rand.Rand) {
	f := ts.files[i]
	switch {
	case how == deleteFile || f == nil:
		ts.files[i] = nil
	case how == truncateFile && len(f.data) == 0:
		ts.files[i] = nil // an empty file cannot get shorter
	case how == truncateFile:
		f.data = f.data[:rng.IntN(len(f.data))]
	case len(f.data) == 0:
		f.data = []byte{1}
	default:
		f.data[rng.IntN(len(f.data))] ^= byte(1 + rng.IntN(255))
	}
}

// damaged is what a caller finds by hash: missing files and files whose
// bytes differ from the recorded hash.
func (ts *testSeed) damaged() []int {
	var out []int
	for i, f := range ts.files {
		if f == nil || sha256.Sum256(f.data) != ts.hashes[i] {
			out = append(out, i)
		}
	}
	return out
}

// repair repairs the damaged files into fresh files and checks their hashes.
func (ts *testSeed) repair(o Options) error {
	ts.t.Helper()
	d := ts.damaged()
	out := map[int]*memFile{}
	var mu sync.Mutex
	write := func(i int) (io.WriterAt, error) {
		mu.Lock()
		defer mu.Unlock()
		if i < 0 || i >= len(ts.sizes) {
			ts.t.Errorf("Repair wrote file %d, not a data file", i)
			return nil, fmt.Errorf("no data file %d", i)
		}
		if out[i] == nil {
			out[i] = &memFile{}
		}
		return out[i], nil
	}
	if err := Repair(context.Background(), ts.l, ts.sizes, d, ts.open(d), write, o); err != nil {
		if len(out) > 0 {
			ts.t.Errorf("Repair failed (%v) but wrote %d files", err, len(out))
		}
		return err
	}
	for _, i := range d {
		if i >= len(ts.sizes) {
			continue
		}
		if out[i] == nil {
			ts.t.Fatalf("damaged file %d was not written", i)
		}
		if sha256.Sum256(out[i].data) != ts.hashes[i] {
			ts.t.Fatalf("repaired file %d (%d bytes, want %d) differs from the original", i, len(out[i].data), ts.sizes[i])
		}
	}
	return nil
}

// randomSizes are n sizes up to max, with empty files and sizes that are
// and are not multiples of 64.
func randomSizes(rng *rand.Rand, n int, most int64) []int64 {
	sizes := make([]int64, n)
	for i := range sizes {
		switch rng.IntN(6) {
		case 0:
			sizes[i] = 0
		case 1:
			sizes[i] = 64 * rng.Int64N(most/64+1)
		default:
			sizes[i] = rng.Int64N(most + 1)
		}
	}
	return sizes
}
