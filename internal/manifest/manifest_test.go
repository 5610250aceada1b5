package manifest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/crypto"
)

func idOf(i int) crypto.ID {
	var id crypto.ID
	binary.LittleEndian.PutUint64(id[:], uint64(i+1)*0x9e3779b97f4a7c15)
	id[31] = byte(i)
	return id
}

func TestBlockHashVectors(t *testing.T) {
	// The published BLAKE3 test vectors: block hashes are plain BLAKE3-256.
	if got := BlockHash([]byte("abc")).String(); got != "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85" {
		t.Errorf(`BlockHash("abc") = %s`, got)
	}
	if got := BlockHash(nil).String(); got != "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262" {
		t.Errorf("BlockHash(nil) = %s", got)
	}
	if ZeroBlockHash(0) != BlockHash(nil) {
		t.Error("ZeroBlockHash(0) is not the hash of nothing")
	}
}

func TestZeroBlockHash(t *testing.T) {
	for _, n := range []int{BlockSize, 1, 512, BlockSize - 1} {
		if ZeroBlockHash(n) != BlockHash(make([]byte, n)) {
			t.Errorf("ZeroBlockHash(%d) differs from BlockHash of %d zeros", n, n)
		}
	}
	if ZeroBlockHash(BlockSize) == ZeroBlockHash(BlockSize-1) {
		t.Error("zero blocks of different lengths hash alike")
	}
}

// TestDigestVectors pins RegionHash and DiskDigest: they are recorded in
// snapshots, so a change breaks verification of every existing backup.
func TestDigestVectors(t *testing.T) {
	blocks := []Hash{BlockHash([]byte("abc")), ZeroBlockHash(BlockSize), ZeroBlockHash(100)}
	region := RegionHash(blocks)
	if got, want := region.String(), "49020ecffe79947454fe28684dc3c7d10c44fde2dd50277107219c9ae70fc956"; got != want {
		t.Errorf("RegionHash = %s, want %s", got, want)
	}
	if got, want := RegionHash(nil).String(), BlockHash(nil).String(); got != want {
		t.Errorf("RegionHash(nil) = %s, want the hash of nothing %s", got, want)
	}
	full := make([]Hash, BlocksPerRegion)
	for i := range full {
		full[i] = ZeroBlockHash(BlockSize)
	}
	zeroRegion := RegionHash(full)
	if got, want := zeroRegion.String(), "26cd178d467ec6417338415e8bda884595aacad765502df907a8e3b117137ca6"; got != want {
		t.Errorf("RegionHash of a zero region = %s, want %s", got, want)
	}
	size := int64(RegionSize + 2*BlockSize + 100)
	if got, want := DiskDigest(size, []Hash{zeroRegion, region}).String(), "58c336681e4c95e4b0a6a5a827fe82b5afb2fcb1e7fb714c6db3568a24d7e48b"; got != want {
		t.Errorf("DiskDigest = %s, want %s", got, want)
	}
	if got, want := DiskDigest(0, nil).String(), "0a7552b1baeae394466343832fad11822975f8fcaace3a6a864d146db69b63e3"; got != want {
		t.Errorf("DiskDigest of an empty disk = %s, want %s", got, want)
	}
}

func TestDigestsSensitive(t *testing.T) {
	a := []Hash{BlockHash([]byte("a")), BlockHash([]byte("b"))}
	b := []Hash{BlockHash([]byte("b")), BlockHash([]byte("a"))}
	if RegionHash(a) == RegionHash(b) {
		t.Error("RegionHash ignores block order")
	}
	if DiskDigest(100, a) == DiskDigest(101, a) {
		t.Error("DiskDigest ignores the size")
	}
	if DiskDigest(100, a) == DiskDigest(100, b) || DiskDigest(100, a) == DiskDigest(100, a[:1]) {
		t.Error("DiskDigest ignores the regions")
	}
}

func TestGeometry(t *testing.T) {
	cases := []struct {
		size    int64
		regions int
		last    int // blocks in the last region
	}{
		{0, 0, 0},
		{1, 1, 1},
		{BlockSize, 1, 1},
		{BlockSize + 1, 1, 2},
		{RegionSize, 1, BlocksPerRegion},
		{RegionSize + 1, 2, 1},
		{3*RegionSize - BlockSize, 3, BlocksPerRegion - 1},
		{MaxDiskSize, MaxDiskSize / RegionSize, BlocksPerRegion},
	}
	for _, c := range cases {
		if got := Regions(c.size); got != c.regions {
			t.Errorf("Regions(%d) = %d, want %d", c.size, got, c.regions)
		}
		if c.regions > 0 {
			if got := RegionBlocks(c.size, c.regions-1); got != c.last {
				t.Errorf("RegionBlocks(%d, last) = %d, want %d", c.size, got, c.last)
			}
			if c.regions > 1 && RegionBlocks(c.size, 0) != BlocksPerRegion {
				t.Errorf("RegionBlocks(%d, 0) = %d", c.size, RegionBlocks(c.size, 0))
			}
		}
	}
}

func sampleMap(regionLen int64) *RegionMap {
	nb := int((regionLen + BlockSize - 1) / BlockSize)
	m := &RegionMap{Blocks: make([]Hash, nb)}
	for i := range m.Blocks {
		m.Blocks[i] = BlockHash([]byte{byte(i), byte(i >> 8)})
	}
	var off uint32
	for i := 0; off < uint32(regionLen); i++ {
		l := min(uint32(1000+i*7919%200000), uint32(regionLen)-off)
		if i%3 != 2 { // leave holes
			m.Extents = append(m.Extents, Extent{Offset: off, Length: l, ID: idOf(i)})
		}
		off += l
	}
	return m
}

func TestRegionMapRoundTrip(t *testing.T) {
	for _, rl := range []int64{RegionSize, 1, BlockSize, BlockSize + 1, 5000000} {
		m := sampleMap(rl)
		b := m.Encode()
		if len(b) != 12+extentSize*len(m.Extents)+32*len(m.Blocks) {
			t.Fatalf("encoded %d bytes", len(b))
		}
		got, err := DecodeRegionMap(b, rl)
		if err != nil {
			t.Fatalf("region of %d: %v", rl, err)
		}
		if len(got.Extents) != len(m.Extents) || len(got.Blocks) != len(m.Blocks) {
			t.Fatalf("region of %d: %d extents, %d blocks", rl, len(got.Extents), len(got.Blocks))
		}
		for i := range m.Extents {
			if got.Extents[i] != m.Extents[i] {
				t.Fatalf("extent %d: %+v, want %+v", i, got.Extents[i], m.Extents[i])
			}
		}
		for i := range m.Blocks {
			if got.Blocks[i] != m.Blocks[i] {
				t.Fatalf("block %d differs", i)
			}
		}
		if !bytes.Equal(got.Encode(), b) {
			t.Fatal("re-encoding differs")
		}
	}
	// An all-zero region: no extents.
	empty := &RegionMap{Blocks: make([]Hash, BlocksPerRegion)}
	got, err := DecodeRegionMap(empty.Encode(), RegionSize)
	if err != nil || len(got.Extents) != 0 {
		t.Fatalf("empty region: %v", err)
	}
}

func TestDecodeRegionMapRejects(t *testing.T) {
	const rl = 3 * BlockSize
	blocks := make([]Hash, 3)
	enc := func(ext ...Extent) []byte { return (&RegionMap{Extents: ext, Blocks: blocks}).Encode() }
	good := enc(Extent{0, 100, idOf(0)}, Extent{100, 50, idOf(1)}, Extent{rl - 10, 10, idOf(2)})
	if _, err := DecodeRegionMap(good, rl); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		b    []byte
		rl   int64
	}{
		{"empty", nil, rl},
		{"short", good[:11], rl},
		{"bad magic", append([]byte("CRL1"), good[4:]...), rl},
		{"truncated", good[:len(good)-1], rl},
		{"trailing", append(bytes.Clone(good), 0), rl},
		{"too few blocks", (&RegionMap{Blocks: blocks[:2]}).Encode(), rl},
		{"too many blocks", (&RegionMap{Blocks: make([]Hash, 4)}).Encode(), rl},
		{"empty extent", enc(Extent{0, 0, idOf(0)}), rl},
		{"overlap", enc(Extent{0, 100, idOf(0)}, Extent{99, 10, idOf(1)}), rl},
		{"out of order", enc(Extent{100, 10, idOf(0)}, Extent{0, 10, idOf(1)}), rl},
		{"duplicate", enc(Extent{0, 10, idOf(0)}, Extent{0, 10, idOf(0)}), rl},
		{"past the end", enc(Extent{rl - 10, 11, idOf(0)}), rl},
		{"starts past the end", enc(Extent{rl, 1, idOf(0)}), rl},
		{"wraps around", enc(Extent{1<<32 - 1, 2, idOf(0)}), rl},
		{"huge length", enc(Extent{0, 1<<32 - 1, idOf(0)}), rl},
		{"negative region", (&RegionMap{Extents: []Extent{{0, 1, idOf(0)}}}).Encode(), -1},
		{"min region", (&RegionMap{Extents: []Extent{{0, 1, idOf(0)}}}).Encode(), -1 << 63},
		{"zero region with an extent", (&RegionMap{Extents: []Extent{{0, 1, idOf(0)}}}).Encode(), 0},
		{"max region", good, 1<<63 - 1},
	}
	for _, c := range cases {
		if m, err := DecodeRegionMap(c.b, c.rl); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v (map %+v), want ErrFormat", c.name, err, m)
		}
	}
}

func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestDecodeHugeCounts(t *testing.T) {
	for _, n := range []uint32{1 << 31, 1<<32 - 1} {
		b := make([]byte, 100)
		copy(b, regionMagic)
		binary.LittleEndian.PutUint32(b[4:], n)
		var err error
		if a := allocated(func() { _, err = DecodeRegionMap(b, RegionSize) }); a > 4096 || !errors.Is(err, ErrFormat) {
			t.Errorf("region map with %d extents: %d bytes allocated, err %v", n, a, err)
		}
		binary.LittleEndian.PutUint32(b[4:], 0)
		binary.LittleEndian.PutUint32(b[8:], n)
		if a := allocated(func() { _, err = DecodeRegionMap(b, 1<<62) }); a > 4096 || !errors.Is(err, ErrFormat) {
			t.Errorf("region map with %d blocks: %d bytes allocated, err %v", n, a, err)
		}
		b = make([]byte, 100)
		copy(b, listMagic)
		binary.LittleEndian.PutUint32(b[4:], n)
		if a := allocated(func() { _, err = DecodeList(b) }); a > 4096 || !errors.Is(err, ErrFormat) {
			t.Errorf("list with %d IDs: %d bytes allocated, err %v", n, a, err)
		}
	}
}

func TestListRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, ListFanout} {
		ids := make([]crypto.ID, n)
		for i := range ids {
			ids[i] = idOf(i)
		}
		b := EncodeList(ids)
		if len(b) != 8+n*crypto.IDSize {
			t.Fatalf("list of %d encodes to %d bytes", n, len(b))
		}
		got, err := DecodeList(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Fatalf("%d IDs, want %d", len(got), n)
		}
		for i := range ids {
			if got[i] != ids[i] {
				t.Fatalf("ID %d differs", i)
			}
		}
	}
}

func TestDecodeListRejects(t *testing.T) {
	good := EncodeList([]crypto.ID{idOf(0), idOf(1)})
	over := make([]crypto.ID, ListFanout+1)
	cases := map[string][]byte{
		"empty":        nil,
		"short":        good[:7],
		"bad magic":    append([]byte("CRM1"), good[4:]...),
		"no IDs":       EncodeList(nil),
		"too many IDs": EncodeList(over),
		"truncated":    good[:len(good)-1],
		"trailing":     append(bytes.Clone(good), 0),
		"count high":   append(append([]byte("CRL1"), 3, 0, 0, 0), good[8:]...),
		"count low":    append(append([]byte("CRL1"), 1, 0, 0, 0), good[8:]...),
	}
	for name, b := range cases {
		if _, err := DecodeList(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
}

func TestParseHash(t *testing.T) {
	h := BlockHash([]byte("x"))
	got, err := ParseHash(h.String())
	if err != nil || got != h {
		t.Fatalf("ParseHash(String()) = %v, %v", got, err)
	}
	for _, s := range []string{"", h.String()[:62], h.String() + "00", strings.Repeat("z", 64)} {
		if _, err := ParseHash(s); err == nil {
			t.Errorf("ParseHash(%q) succeeded", s)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, s := range []string{"a", "vm-01 disk", strings.Repeat("x", 128), "Überweisung", "日本"} {
		if err := ValidName(s); err != nil {
			t.Errorf("ValidName(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", strings.Repeat("x", 129), "a\nb", "tab\there", "nul\x00", "bell\a"} {
		if err := ValidName(s); err == nil {
			t.Errorf("ValidName(%q) accepted", s)
		}
	}
}
