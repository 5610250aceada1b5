package index

import (
	"bytes"
	"encoding/binary"
	"slices"
	"sync"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/pack"
)

// KeySize is how many leading bytes of a chunk ID the in-memory index keeps.
// 192 bits of a keyed hash: the chance that two of 10^12 chunks share a key is
// about 10^24/2^193, far below the chance of an undetected disk error. The
// full ID is still checked when a blob is read back (sealing binds it).
const KeySize = 24

type key [KeySize]byte

func keyOf(id crypto.ID) key {
	var k key
	copy(k[:], id[:KeySize])
	return k
}

// record is the 36-byte in-memory form of one index entry.
type record struct {
	key  key
	pack uint32 // position in Index.packs
	off  uint32
	lf   uint32 // bits 0-29 sealed length, bit 30 meta blob, bit 31 zstd
}

const (
	lenMask = 1<<30 - 1
	metaBit = 1 << 30
	zstdBit = 1 << 31
	// minTail is the smallest tail that is merged; the tail may grow to a
	// sixteenth of the sorted array, so merging costs O(1) amortized per add
	// while the tail's map adds at most a few bytes per entry.
	minTail = 1 << 14
)

// Location is where a blob is stored.
type Location struct {
	Pack   pack.ID
	Offset uint32
	Length uint32
	Type   uint8
	Flags  uint8
}

// Index is the in-memory chunk index. It is safe for concurrent use.
type Index struct {
	mu      sync.RWMutex
	packs   []pack.ID
	packPos map[pack.ID]uint32
	sorted  []record // sorted by key unless loading
	loading bool     // sorted is being bulk-filled and is not sorted yet
	// dir[p] is the first record of sorted whose key's top dirBits bits
	// are p or more (dir[len(dir)-1] is len(sorted)): a lookup searches
	// only the few records of its key's prefix. Keys are keyed hashes, so
	// prefixes spread evenly. At most half a byte per record.
	dir     []uint32
	dirBits uint
	tail    map[key]record
}

// New returns an empty index.
func New() *Index { return &Index{packPos: map[pack.ID]uint32{}, tail: map[key]record{}} }

// BeginLoad starts a bulk load of about n entries: AddPack appends without
// sorting, and Finish sorts once. Lookups must wait for Finish.
func (x *Index) BeginLoad(n int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.mergeTail()
	x.sorted = slices.Grow(x.sorted, n)
	x.loading = true
}

// AddPack records the blobs of one stored pack.
func (x *Index) AddPack(id pack.ID, blobs []pack.Entry) {
	x.mu.Lock()
	defer x.mu.Unlock()
	pos, ok := x.packPos[id]
	if !ok {
		pos = uint32(len(x.packs))
		x.packs = append(x.packs, id)
		x.packPos[id] = pos
	}
	for _, b := range blobs {
		lf := b.Length & lenMask
		if b.Type == pack.TypeMeta {
			lf |= metaBit
		}
		if b.Flags&pack.FlagZstd != 0 {
			lf |= zstdBit
		}
		r := record{key: keyOf(b.ID), pack: pos, off: b.Offset, lf: lf}
		if x.loading {
			x.sorted = append(x.sorted, r)
			continue
		}
		if _, dup := x.tail[r.key]; dup {
			continue
		}
		if _, dup := x.search(r.key); dup {
			continue // stored twice (a resumed backup); the first copy serves
		}
		x.tail[r.key] = r
	}
	if len(x.tail) >= max(minTail, len(x.sorted)/16) {
		x.mergeTail()
	}
}

// mergeTail sorts the tail and merges it into the sorted array in place,
// from the back, so no second copy of the array is ever needed.
func (x *Index) mergeTail() {
	if len(x.tail) == 0 {
		return
	}
	add := make([]record, 0, len(x.tail))
	for _, r := range x.tail {
		add = append(add, r)
	}
	slices.SortFunc(add, cmpRecord)
	n, m := len(x.sorted), len(add)
	x.sorted = slices.Grow(x.sorted, m)[:n+m]
	i, j, k := n-1, m-1, n+m-1
	for j >= 0 {
		if i >= 0 && cmpRecord(x.sorted[i], add[j]) > 0 {
			x.sorted[k] = x.sorted[i]
			i--
		} else {
			x.sorted[k] = add[j]
			j--
		}
		k--
	}
	clear(x.tail)
	x.buildDir()
}

// buildDir rebuilds dir for the sorted array: eight to sixteen records
// per prefix.
func (x *Index) buildDir() {
	bits := uint(0)
	for bits < 28 && len(x.sorted)>>(bits+4) > 0 {
		bits++
	}
	n := 1 << bits
	if cap(x.dir) >= n+1 {
		x.dir = x.dir[:n+1]
	} else {
		x.dir = make([]uint32, n+1)
	}
	x.dirBits = bits
	i := 0
	for p := range n {
		for i < len(x.sorted) && x.prefix(x.sorted[i].key) < uint32(p) {
			i++
		}
		x.dir[p] = uint32(i)
	}
	x.dir[n] = uint32(len(x.sorted))
}

// prefix is the top dirBits bits of a key.
func (x *Index) prefix(k key) uint32 {
	if x.dirBits == 0 {
		return 0
	}
	return binary.BigEndian.Uint32(k[:4]) >> (32 - x.dirBits)
}

// search finds k in the sorted array.
func (x *Index) search(k key) (int, bool) {
	if len(x.dir) == 0 {
		return slices.BinarySearchFunc(x.sorted, k, cmpKey)
	}
	p := x.prefix(k)
	lo, hi := int(x.dir[p]), int(x.dir[p+1])
	i, found := slices.BinarySearchFunc(x.sorted[lo:hi], k, cmpKey)
	return lo + i, found
}

func cmpRecord(a, b record) int { return bytes.Compare(a.key[:], b.key[:]) }

func cmpKey(r record, k key) int { return bytes.Compare(r.key[:], k[:]) }

// Finish ends a bulk load: it sorts the loaded entries and merges pending
// additions.
func (x *Index) Finish() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.loading {
		slices.SortFunc(x.sorted, cmpRecord)
		x.loading = false
		x.buildDir()
	}
	x.mergeTail()
	x.tail = map[key]record{}
}

func (x *Index) find(id crypto.ID) (record, bool) {
	if x.loading {
		panic("index: lookup during a bulk load; call Finish first")
	}
	k := keyOf(id)
	i, found := x.search(k)
	if found {
		return x.sorted[i], true
	}
	r, ok := x.tail[k]
	return r, ok
}

// Has reports whether the chunk is stored.
func (x *Index) Has(id crypto.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.find(id)
	return ok
}

// Lookup returns where the chunk is stored.
func (x *Index) Lookup(id crypto.ID) (Location, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	r, ok := x.find(id)
	if !ok {
		return Location{}, false
	}
	loc := Location{Pack: x.packs[r.pack], Offset: r.off, Length: r.lf & lenMask}
	if r.lf&metaBit != 0 {
		loc.Type = pack.TypeMeta
	}
	if r.lf&zstdBit != 0 {
		loc.Flags = pack.FlagZstd
	}
	return loc, true
}

// HasPack reports whether any blob of the pack is indexed.
func (x *Index) HasPack(id pack.ID) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.packPos[id]
	return ok
}

// Len returns the number of entries.
func (x *Index) Len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.sorted) + len(x.tail)
}

// Packs returns the number of packs.
func (x *Index) Packs() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.packs)
}

// ForgetPacks drops every entry of the given packs, so lookups no longer
// find chunks stored only there (a backup then stores them again), and
// returns how many entries went. A vault's garbage collector names such
// packs: marked, being deleted, or gone.
func (x *Index) ForgetPacks(ids []pack.ID) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	drop := map[uint32]bool{}
	for _, id := range ids {
		if pos, ok := x.packPos[id]; ok {
			drop[pos] = true
			delete(x.packPos, id)
		}
	}
	if len(drop) == 0 {
		return 0
	}
	x.mergeTail()
	n := len(x.sorted)
	x.sorted = slices.DeleteFunc(x.sorted, func(r record) bool { return drop[r.pack] })
	x.buildDir()
	return n - len(x.sorted)
}

// PacksOf returns the packs holding the chunks ids, each once in the order
// first met, under one read lock, and the IDs it does not hold.
func (x *Index) PacksOf(ids []crypto.ID) (packs []pack.ID, missing []crypto.ID) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	last := -1
	for _, id := range ids {
		r, ok := x.find(id)
		if !ok {
			missing = append(missing, id)
			continue
		}
		if int(r.pack) == last {
			continue
		}
		last = int(r.pack)
		if p := x.packs[r.pack]; !slices.Contains(packs, p) {
			packs = append(packs, p)
		}
	}
	return packs, missing
}
