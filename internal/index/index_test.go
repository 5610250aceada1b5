package index

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/pack"
)

// gen produces random pack contents deterministically.
type gen struct{ r *rand.Rand }

func newGen(seed uint64) *gen { return &gen{rand.New(rand.NewPCG(seed, seed^0x5eed))} }

func (g *gen) id() crypto.ID {
	var id crypto.ID
	for i := 0; i < crypto.IDSize; i += 8 {
		binary.LittleEndian.PutUint64(id[i:], g.r.Uint64())
	}
	return id
}

func (g *gen) packID() pack.ID { return pack.ID(g.id()) }

// pack returns n blobs laid out end to end, with random types and flags.
func (g *gen) pack(n int) []pack.Entry {
	blobs := make([]pack.Entry, n)
	var off uint32
	for i := range blobs {
		e := &blobs[i]
		e.ID = g.id()
		e.Type = uint8(g.r.IntN(2))
		if g.r.IntN(2) == 1 {
			e.Flags = pack.FlagZstd
		}
		e.Length = crypto.Overhead + uint32(g.r.IntN(1<<20))
		if g.r.IntN(100) == 0 {
			e.Length = pack.MaxBlobLength
		}
		e.RawLength = uint32(g.r.IntN(pack.MaxBlobLength + 1))
		e.Offset = off
		off += e.Length % (1 << 22)
	}
	return blobs
}

// truth is what the index should say.
type truth map[crypto.ID]Location

func (tr truth) add(id pack.ID, blobs []pack.Entry) {
	for _, b := range blobs {
		if _, dup := tr[b.ID]; dup {
			continue
		}
		tr[b.ID] = Location{Pack: id, Offset: b.Offset, Length: b.Length, Type: b.Type, Flags: b.Flags}
	}
}

func (tr truth) check(t *testing.T, x *Index, stage string) {
	t.Helper()
	for id, want := range tr {
		got, ok := x.Lookup(id)
		if !ok {
			t.Fatalf("%s: %s not found", stage, id)
		}
		if got != want {
			t.Fatalf("%s: %s at %+v, want %+v", stage, id, got, want)
		}
		if !x.Has(id) {
			t.Fatalf("%s: Has(%s) false after Lookup found it", stage, id)
		}
	}
	if x.Len() != len(tr) {
		t.Fatalf("%s: Len = %d, want %d", stage, x.Len(), len(tr))
	}
}

// addPacks adds about n entries in packs of about 80, to x and tr.
func addPacks(g *gen, x *Index, tr truth, n int) {
	for n > 0 {
		k := min(n, 60+g.r.IntN(41))
		id, blobs := g.packID(), g.pack(k)
		x.AddPack(id, blobs)
		tr.add(id, blobs)
		n -= k
	}
}

func TestIndexLookup(t *testing.T) {
	g := newGen(1)
	x := New()
	tr := truth{}
	if _, ok := x.Lookup(g.id()); ok || x.Has(g.id()) || x.Len() != 0 {
		t.Fatal("empty index finds something")
	}

	// A bulk load.
	x.BeginLoad(3000)
	addPacks(g, x, tr, 3000)
	x.Finish()
	tr.check(t, x, "after bulk load")
	if len(x.tail) != 0 || !sortedOK(x) {
		t.Fatal("bulk load left a tail or an unsorted array")
	}

	// Incremental additions stay in the tail and are found there.
	addPacks(g, x, tr, 3000)
	tr.check(t, x, "with a tail")
	if len(x.tail) == 0 {
		t.Fatal("incremental additions were merged early")
	}

	// A second bulk load merges the tail first.
	x.BeginLoad(4000)
	addPacks(g, x, tr, 4000)
	x.Finish()
	tr.check(t, x, "after a second bulk load")
	if len(x.tail) != 0 || !sortedOK(x) || len(tr) != 10000 {
		t.Fatalf("second bulk load: tail %d, sorted %v, %d entries", len(x.tail), sortedOK(x), len(tr))
	}

	// Enough incremental additions to merge the tail several times.
	merges := 0
	for range 500 {
		before := len(x.tail)
		addPacks(g, x, tr, 80)
		if len(x.tail) < before {
			merges++
			if !sortedOK(x) {
				t.Fatal("the sorted array is unsorted after a merge")
			}
		}
	}
	if merges < 2 {
		t.Fatalf("%d tail merges, want at least 2", merges)
	}
	tr.check(t, x, "after tail merges")
	x.Finish()
	tr.check(t, x, "after Finish")

	// Absent IDs, including ones sharing all but the last key byte.
	for id := range tr {
		near := id
		near[KeySize-1] ^= 1
		if _, ok := tr[near]; ok {
			continue
		}
		if x.Has(near) {
			t.Fatalf("Has(%s) true for an absent ID", near)
		}
		if _, ok := x.Lookup(near); ok {
			t.Fatalf("Lookup(%s) found an absent ID", near)
		}
	}
	for range 10000 {
		if id := g.id(); x.Has(id) {
			t.Fatalf("Has(%s) true for a random ID", id)
		}
	}
	if x.Packs() == 0 || x.Packs() != len(x.packs) {
		t.Fatalf("Packs = %d", x.Packs())
	}
}

// sortedOK reports whether the sorted array is sorted and its directory
// points at the first record of each prefix.
func sortedOK(x *Index) bool {
	for i := 1; i < len(x.sorted); i++ {
		if cmpRecord(x.sorted[i-1], x.sorted[i]) > 0 {
			return false
		}
	}
	if len(x.dir) != 1<<x.dirBits+1 || int(x.dir[len(x.dir)-1]) != len(x.sorted) {
		return false
	}
	for p := range len(x.dir) - 1 {
		i := int(x.dir[p])
		if i < len(x.sorted) && x.prefix(x.sorted[i].key) < uint32(p) || i > 0 && x.prefix(x.sorted[i-1].key) >= uint32(p) {
			return false
		}
	}
	return true
}

func TestIndexKeepsFirstLocation(t *testing.T) {
	g := newGen(2)
	x := New()
	p1, p2 := g.packID(), g.packID()
	blobs := g.pack(3)
	x.AddPack(p1, blobs)
	x.AddPack(p2, blobs) // the same chunks stored again elsewhere
	for _, b := range blobs {
		loc, ok := x.Lookup(b.ID)
		if !ok || loc.Pack != p1 {
			t.Fatalf("Lookup = %+v, %v; want the first pack", loc, ok)
		}
	}
	if x.Len() != 3 {
		t.Fatalf("Len = %d, want 3", x.Len())
	}
	if !x.HasPack(p1) || !x.HasPack(p2) || x.HasPack(g.packID()) || x.Packs() != 2 {
		t.Fatal("HasPack")
	}
	// Adding a pack again reuses its position.
	x.AddPack(p1, g.pack(1))
	if x.Packs() != 2 {
		t.Fatalf("Packs = %d after re-adding a pack", x.Packs())
	}
}

func TestIndexLocationBits(t *testing.T) {
	x := New()
	p := pack.ID{1}
	blobs := []pack.Entry{
		{ID: crypto.ID{1}, Type: pack.TypeData, Flags: 0, Offset: 0, Length: pack.MaxBlobLength},
		{ID: crypto.ID{2}, Type: pack.TypeMeta, Flags: 0, Offset: 1, Length: crypto.Overhead},
		{ID: crypto.ID{3}, Type: pack.TypeData, Flags: pack.FlagZstd, Offset: 1<<32 - 1, Length: 12345},
		{ID: crypto.ID{4}, Type: pack.TypeMeta, Flags: pack.FlagZstd, Offset: 7, Length: pack.MaxBlobLength - 1},
	}
	x.AddPack(p, blobs)
	for _, b := range blobs {
		loc, ok := x.Lookup(b.ID)
		want := Location{Pack: p, Offset: b.Offset, Length: b.Length, Type: b.Type, Flags: b.Flags}
		if !ok || loc != want {
			t.Errorf("Lookup(%x) = %+v, want %+v", b.ID[0], loc, want)
		}
	}
}

func TestIndexLookupDuringLoadPanics(t *testing.T) {
	x := New()
	x.BeginLoad(1)
	x.AddPack(pack.ID{1}, []pack.Entry{{ID: crypto.ID{1}, Length: 100}})
	defer func() {
		if recover() == nil {
			t.Fatal("Has during a bulk load did not panic")
		}
	}()
	x.Has(crypto.ID{1})
}

func TestIndexConcurrent(t *testing.T) {
	g := newGen(3)
	x := New()
	var packs [][]pack.Entry
	var ids []pack.ID
	for range 50 {
		packs = append(packs, g.pack(80))
		ids = append(ids, g.packID())
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(packs); i += 4 {
				x.AddPack(ids[i], packs[i])
				for _, b := range packs[i] {
					if !x.Has(b.ID) {
						t.Errorf("just added %s, not found", b.ID)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if x.Len() != 50*80 {
		t.Fatalf("Len = %d", x.Len())
	}
}

func TestFileRoundTripIntoIndex(t *testing.T) {
	g := newGen(4)
	f := &File{Supersedes: [][32]byte{{1}, {2, 3}}}
	tr := truth{}
	for range 20 {
		p := PackBlobs{Pack: g.packID(), Blobs: g.pack(1 + g.r.IntN(100))}
		f.Packs = append(f.Packs, p)
		tr.add(p.Pack, p.Blobs)
	}
	f.Packs = append(f.Packs, PackBlobs{Pack: g.packID(), Blobs: []pack.Entry{}})
	b := f.Encode()
	got, err := DecodeFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !filesEqual(f, got) {
		t.Fatal("index file changed across Encode/DecodeFile")
	}
	x := New()
	n := 0
	for _, p := range got.Packs {
		n += len(p.Blobs)
	}
	x.BeginLoad(n)
	for _, p := range got.Packs {
		x.AddPack(p.Pack, p.Blobs)
	}
	x.Finish()
	tr.check(t, x, "loaded from a decoded file")
}

// TestForgetPacks: entries of forgotten packs are gone, from the sorted
// array and the tail alike; every other entry is still found.
func TestForgetPacks(t *testing.T) {
	g := newGen(7)
	x := New()
	tr := truth{}
	x.BeginLoad(3000)
	addPacks(g, x, tr, 3000)
	x.Finish()
	addPacks(g, x, tr, 500) // some in the tail
	var forget []pack.ID
	for _, loc := range tr {
		if len(forget) < 5 && !slices.Contains(forget, loc.Pack) {
			forget = append(forget, loc.Pack)
		}
	}
	gone := 0
	for id, loc := range tr {
		if slices.Contains(forget, loc.Pack) {
			delete(tr, id)
			gone++
		}
	}
	if n := x.ForgetPacks(forget); n != gone {
		t.Fatalf("ForgetPacks dropped %d entries, want %d", n, gone)
	}
	tr.check(t, x, "after ForgetPacks")
	if x.Len() != len(tr) || !sortedOK(x) {
		t.Fatalf("%d entries (want %d), sorted %v", x.Len(), len(tr), sortedOK(x))
	}
	for _, p := range forget {
		if x.HasPack(p) {
			t.Fatalf("pack %s still known", p)
		}
	}
	if x.ForgetPacks(forget) != 0 {
		t.Fatal("forgetting twice dropped more")
	}
}

// TestPacksOf: the packs of a set of chunks, each once, and the chunks the
// index does not hold.
func TestPacksOf(t *testing.T) {
	g := newGen(11)
	x := New()
	tr := truth{}
	addPacks(g, x, tr, 2000)
	var ids []crypto.ID
	want := map[pack.ID]bool{}
	for id, loc := range tr {
		ids = append(ids, id)
		want[loc.Pack] = true
		if len(ids) == 300 {
			break
		}
	}
	absent := g.id()
	packs, missing := x.PacksOf(append(ids, absent))
	if len(missing) != 1 || missing[0] != absent {
		t.Fatalf("missing %v, want [%s]", missing, absent)
	}
	if len(packs) != len(want) {
		t.Fatalf("%d packs, want %d", len(packs), len(want))
	}
	for _, p := range packs {
		if !want[p] {
			t.Fatalf("pack %s holds none of the chunks", p)
		}
	}
}
