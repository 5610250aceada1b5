package repo

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/index"
	"github.com/cofferhq/coffer/internal/store"
)

// TestRanges checks how blobs are grouped into ranged reads: by pack, in
// offset order whatever the input order, split at gaps over maxGap and
// before a run would span more than maxRange.
func TestRanges(t *testing.T) {
	a, b := [32]byte{1}, [32]byte{2}
	loc := func(p [32]byte, off, n uint32) index.Location {
		return index.Location{Pack: p, Offset: off, Length: n}
	}
	items := []index.Location{
		loc(a, 20, 10), // gap 5 after the blob that ends at 15: same run
		loc(b, 0, 10),
		loc(a, 0, 10),
		loc(a, 10, 5),  // adjacent
		loc(a, 36, 10), // gap 6: a new run
		loc(a, 46, 90), // would make that run 100 long: a new run
		loc(b, 200, 1),
	}
	got := Ranges(items, func(l index.Location) index.Location { return l }, 5, 99)
	want := [][]index.Location{
		{loc(a, 0, 10), loc(a, 10, 5), loc(a, 20, 10)},
		{loc(a, 36, 10)},
		{loc(a, 46, 90)},
		{loc(b, 0, 10)},
		{loc(b, 200, 1)},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d runs %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Fatalf("run %d: %v, want %v", i, got[i], want[i])
		}
		for k := range want[i] {
			if got[i][k] != want[i][k] {
				t.Fatalf("run %d: %v, want %v", i, got[i], want[i])
			}
		}
	}
}

// TestLoadBlobs loads blobs of one pack in one ranged read, a blob named
// twice is read once and handed to both positions, and missing, damaged or
// overlapping blobs fail with errors that say so.
func TestLoadBlobs(t *testing.T) {
	r, st, dir := initRepo(t)
	blobs := someBlobs(6, 3000)
	id, _, entries := writePack(t, r, blobs)
	r.Index.AddPack(id, entries)
	h := r.Keys().NewIDHasher()
	ids := []crypto.ID{h.Sum(blobs[4].plain), h.Sum(blobs[0].plain), h.Sum(blobs[4].plain), h.Sum(blobs[2].plain)}
	want := [][]byte{blobs[4].plain, blobs[0].plain, blobs[4].plain, blobs[2].plain}

	counting := store.NewCounting(st)
	r.st = counting
	var mu sync.Mutex
	got := make([][]byte, len(ids))
	err := r.LoadBlobs(ctx, ids, 3, func(i int, plain []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if got[i] != nil {
			t.Errorf("position %d handed over twice", i)
		}
		got[i] = plain
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("position %d: got %d bytes, want %d", i, len(got[i]), len(want[i]))
		}
	}
	if n := counting.Requests(); n != 1 {
		t.Fatalf("%d store requests for blobs of one pack, want 1", n)
	}

	missing := h.Sum([]byte("never stored"))
	if err := r.LoadBlobs(ctx, []crypto.ID{ids[0], missing}, 2, func(int, []byte) error { return nil }); err == nil ||
		!strings.Contains(err.Error(), "not in the index") {
		t.Fatalf("missing blob: %v", err)
	}
	stop := errors.New("stop")
	if err := r.LoadBlobs(ctx, ids[:1], 1, func(int, []byte) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("fn's error: %v", err)
	}
	var e2 = entries[2]
	flipByte(t, dir, PackName(id), int(e2.Offset+e2.Length/2), 0x10)
	err = r.LoadBlobs(ctx, ids, 2, func(int, []byte) error { return nil })
	if !errors.Is(err, crypto.ErrAuth) || !strings.Contains(err.Error(), ids[3].String()) {
		t.Fatalf("damaged blob: %v, want ErrAuth naming %s", err, ids[3])
	}

	// A run that names one blob twice is refused, not misread.
	dup := []index.Location{{Pack: id, Offset: entries[0].Offset, Length: entries[0].Length}}
	dup = append(dup, dup[0])
	var buf []byte
	_, err = StreamBlobs(ctx, st, dup, func(l index.Location) index.Location { return l }, &buf, func(index.Location, []byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Fatalf("overlapping run: %v", err)
	}
}
