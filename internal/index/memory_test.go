package index

import (
	"runtime"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/pack"
)

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// loadRandom builds an index of n random entries in packs of 60 to 100
// blobs, the way repo.LoadIndex does (BeginLoad, AddPack per pack, Finish),
// and returns the heap it holds in bytes per entry. The input is generated
// pack by pack into one reused buffer, so only the index is measured.
func loadRandom(n int) (x *Index, bytesPerEntry float64) {
	g := newGen(uint64(n))
	blobs := make([]pack.Entry, 0, 100)
	before := heapAlloc()
	x = New()
	x.BeginLoad(n)
	for left := n; left > 0; {
		k := min(left, 60+g.r.IntN(41))
		blobs = blobs[:k]
		var off uint32
		for i := range blobs {
			blobs[i] = pack.Entry{ID: g.id(), Offset: off, Length: crypto.Overhead + uint32(g.r.IntN(1<<20))}
			off += blobs[i].Length
		}
		x.AddPack(g.packID(), blobs)
		left -= k
	}
	x.Finish()
	after := heapAlloc()
	runtime.KeepAlive(blobs)
	return x, float64(int64(after)-int64(before)) / float64(n)
}

// TestIndexMemory: an index of 1,000,000 entries holds at most 40 bytes per
// entry (36-byte records plus the pack table).
func TestIndexMemory(t *testing.T) {
	const n = 1_000_000
	x, per := loadRandom(n)
	t.Logf("%d entries: %.2f bytes/entry", n, per)
	if x.Len() != n {
		t.Fatalf("Len = %d, want %d", x.Len(), n)
	}
	if per > 40 {
		t.Fatalf("the index holds %.2f bytes per entry, want at most 40", per)
	}
	if per < 36 {
		t.Fatalf("measured %.2f bytes per entry, less than a record: the measurement is broken", per)
	}
	// Spot-check that what was measured is a working index: replay the
	// generator and look up every 1000th ID.
	g := newGen(n)
	found := 0
	for left, i := n, 0; left > 0; {
		k := min(left, 60+g.r.IntN(41))
		for j := 0; j < k; j++ {
			id := g.id()
			g.r.IntN(1 << 20)
			if i%1000 == 0 {
				if !x.Has(id) {
					t.Fatalf("entry %d missing", i)
				}
				found++
			}
			i++
		}
		g.packID()
		left -= k
	}
	if found != n/1000 {
		t.Fatalf("checked %d entries", found)
	}
	runtime.KeepAlive(x)
}

// BenchmarkIndexMemory reports the heap an index of 10,000,000 entries holds.
// Run it alone: go test -run '^$' -bench IndexMemory -benchtime 1x ./internal/index
func BenchmarkIndexMemory(b *testing.B) {
	const n = 10_000_000
	for b.Loop() {
		x, per := loadRandom(n)
		b.ReportMetric(per, "bytes/entry")
		b.ReportMetric(float64(x.Len()), "entries")
		runtime.KeepAlive(x)
	}
}
