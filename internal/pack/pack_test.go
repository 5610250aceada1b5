package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/testutil/allocs"
)

func testSealer(t testing.TB) *crypto.Sealer {
	t.Helper()
	s, err := crypto.NewSealer(bytes.Repeat([]byte{0x17}, crypto.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func idOf(i int) crypto.ID {
	var id crypto.ID
	binary.LittleEndian.PutUint64(id[:], uint64(i)*0x9e3779b97f4a7c15)
	id[31] = byte(i)
	return id
}

// buildPack seals n blobs of varying size into a pack, alternating Add and
// AppendSealed, and returns the pack bytes, its entries and the plaintexts.
func buildPack(t testing.TB, s *crypto.Sealer, n int) ([]byte, []Entry, [][]byte) {
	t.Helper()
	b := NewBuilder(make([]byte, 0, 64<<10))
	var plains [][]byte
	for i := 0; i < n; i++ {
		plain := bytes.Repeat([]byte{byte(i)}, 1+i*37%500)
		id := idOf(i)
		typ, flags := TypeData, uint8(0)
		if i%3 == 1 {
			typ = TypeMeta
		}
		if i%2 == 1 {
			flags = FlagZstd
		}
		if i%2 == 0 {
			b.Add(typ, flags, id, len(plain)+i, s.Seal(nil, plain, BlobAD(typ, id)))
		} else {
			dst, ok := b.Reserve(typ, flags, id, len(plain)+i, len(plain)+crypto.Overhead)
			if !ok {
				t.Fatalf("Reserve of %d bytes failed with %d of %d used", len(plain)+crypto.Overhead, b.Size(), 64<<10)
			}
			if got := s.Seal(dst[:0], plain, BlobAD(typ, id)); &got[0] != &dst[0] || len(got) != len(dst) {
				t.Fatal("sealing into a reserved slice did not fill it in place")
			}
		}
		plains = append(plains, plain)
		if b.Count() != i+1 {
			t.Fatalf("Count = %d after %d blobs", b.Count(), i+1)
		}
	}
	size := b.Size()
	buf, entries := b.Finish(s)
	if n > 0 {
		last := entries[n-1]
		if int(last.Offset+last.Length) != size {
			t.Fatalf("blobs end at %d, Size said %d", last.Offset+last.Length, size)
		}
	}
	return buf, entries, plains
}

func TestReserveNeverReallocates(t *testing.T) {
	b := NewBuilder(make([]byte, 0, 100))
	if _, ok := b.Reserve(TypeData, 0, idOf(0), 10, 60); !ok {
		t.Fatal("first reservation failed")
	}
	if _, ok := b.Reserve(TypeData, 0, idOf(1), 10, 41); ok {
		t.Fatal("a reservation beyond the buffer's capacity succeeded")
	}
	if b.Count() != 1 || b.Size() != 60 {
		t.Fatalf("a failed reservation changed the builder: %d blobs, %d bytes", b.Count(), b.Size())
	}
}

func TestBuilderRoundTrip(t *testing.T) {
	s := testSealer(t)
	for _, n := range []int{0, 1, 2, 50} {
		buf, entries, plains := buildPack(t, s, n)
		if len(entries) != n {
			t.Fatalf("Finish returned %d entries, want %d", len(entries), n)
		}
		hl, err := ParseTrailer(buf[len(buf)-TrailerSize:], int64(len(buf)))
		if err != nil {
			t.Fatalf("%d blobs: %v", n, err)
		}
		if want := int64(crypto.Overhead + headerFixed + n*EntrySize); hl != want {
			t.Fatalf("%d blobs: header length %d, want %d", n, hl, want)
		}
		sealed := buf[int64(len(buf))-TrailerSize-hl : len(buf)-TrailerSize]
		got, err := OpenHeader(s, sealed, int64(len(buf)), "pack x")
		if err != nil {
			t.Fatalf("%d blobs: %v", n, err)
		}
		if len(got) != n {
			t.Fatalf("header has %d entries, want %d", len(got), n)
		}
		var off uint32
		for i, e := range got {
			if e != entries[i] {
				t.Fatalf("entry %d: header says %+v, builder said %+v", i, e, entries[i])
			}
			if e.Offset != off {
				t.Fatalf("entry %d at %d, want %d", i, e.Offset, off)
			}
			off += e.Length
			if int(e.RawLength) != len(plains[i])+i {
				t.Fatalf("entry %d raw length %d", i, e.RawLength)
			}
			plain, err := s.Open(nil, buf[e.Offset:e.Offset+e.Length], BlobAD(e.Type, e.ID), "blob")
			if err != nil {
				t.Fatalf("blob %d: %v", i, err)
			}
			if !bytes.Equal(plain, plains[i]) {
				t.Fatalf("blob %d plaintext differs", i)
			}
			// The AD binds type and ID.
			other := TypeMeta - e.Type
			if _, err := s.Open(nil, buf[e.Offset:e.Offset+e.Length], BlobAD(other, e.ID), "blob"); !errors.Is(err, crypto.ErrAuth) {
				t.Fatalf("blob %d opened as the other type", i)
			}
			if _, err := s.Open(nil, buf[e.Offset:e.Offset+e.Length], BlobAD(e.Type, idOf(i+1)), "blob"); !errors.Is(err, crypto.ErrAuth) {
				t.Fatalf("blob %d opened under another ID", i)
			}
		}
		if Sum(buf) != Sum(bytes.Clone(buf)) || Sum(buf) == Sum(buf[1:]) {
			t.Fatal("Sum")
		}
	}
}

func TestEncodeDecodeHeader(t *testing.T) {
	entries := []Entry{
		{Type: TypeData, Flags: FlagZstd, Offset: 0, Length: crypto.Overhead, RawLength: 0, ID: idOf(1)},
		{Type: TypeMeta, Flags: 0, Offset: crypto.Overhead, Length: MaxBlobLength, RawLength: MaxBlobLength, ID: idOf(2)},
		{Type: TypeData, Flags: 0, Offset: crypto.Overhead + MaxBlobLength, Length: 1000, RawLength: 5, ID: idOf(3)},
	}
	b := EncodeHeader(entries)
	if len(b) != headerFixed+len(entries)*EntrySize {
		t.Fatalf("header is %d bytes", len(b))
	}
	got, err := DecodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(entries) {
		t.Fatalf("%d entries", len(got))
	}
	for i := range got {
		if got[i] != entries[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], entries[i])
		}
	}
	// Offsets are not stored: DecodeHeader recomputes them.
	moved := []Entry{{Offset: 999, Length: 100, ID: idOf(1)}}
	got, err = DecodeHeader(EncodeHeader(moved))
	if err != nil || got[0].Offset != 0 {
		t.Fatalf("offset %d, err %v", got[0].Offset, err)
	}
	empty, err := DecodeHeader(EncodeHeader(nil))
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty header: %v %v", empty, err)
	}
}

func TestDecodeHeaderRejects(t *testing.T) {
	good := EncodeHeader([]Entry{{Length: 100, RawLength: 10, ID: idOf(1)}, {Length: 200, ID: idOf(2)}})
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := map[string][]byte{
		"empty":            nil,
		"short":            good[:7],
		"bad magic":        mod(func(b []byte) []byte { b[0] = 'X'; return b }),
		"count too high":   mod(func(b []byte) []byte { b[4] = 3; return b }),
		"count too low":    mod(func(b []byte) []byte { b[4] = 1; return b }),
		"truncated entry":  good[:len(good)-1],
		"trailing byte":    append(bytes.Clone(good), 0),
		"reserved byte 2":  mod(func(b []byte) []byte { b[headerFixed+2] = 1; return b }),
		"reserved byte 3":  mod(func(b []byte) []byte { b[headerFixed+EntrySize+3] = 1; return b }),
		"unknown type":     mod(func(b []byte) []byte { b[headerFixed] = 2; return b }),
		"unknown flag":     mod(func(b []byte) []byte { b[headerFixed+1] = 2; return b }),
		"length too small": mod(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[headerFixed+4:], crypto.Overhead-1); return b }),
		"length too big":   mod(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[headerFixed+4:], MaxBlobLength+1); return b }),
		"raw too big":      mod(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[headerFixed+8:], MaxBlobLength+1); return b }),
		"huge count":       mod(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[4:], math.MaxUint32); return b }),
	}
	// Five blobs of the maximum length pass 4 GiB.
	var big []Entry
	for i := 0; i < 5; i++ {
		big = append(big, Entry{Length: MaxBlobLength, ID: idOf(i)})
	}
	cases["over 4 GiB"] = EncodeHeader(big)
	for name, b := range cases {
		if _, err := DecodeHeader(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
}

// TestDecodeHeaderHugeCount: a header claiming 2^31 entries in 100 bytes is
// rejected before anything is allocated for the entries.
func TestDecodeHeaderHugeCount(t *testing.T) {
	b := make([]byte, 100)
	copy(b, headerMagic)
	binary.LittleEndian.PutUint32(b[4:], 1<<31)
	var err error
	if n := allocs.Least(func() { _, err = DecodeHeader(b) }); n > 4096 {
		t.Errorf("rejecting a hostile header allocated %d bytes", n)
	}
	if !errors.Is(err, ErrFormat) {
		t.Fatalf("err = %v, want ErrFormat", err)
	}
	// MaxEntries+1 entries with matching length are refused too.
	n := MaxEntries + 1
	b = make([]byte, headerFixed+n*EntrySize)
	copy(b, headerMagic)
	binary.LittleEndian.PutUint32(b[4:], uint32(n))
	if _, err := DecodeHeader(b); !errors.Is(err, ErrFormat) {
		t.Fatalf("MaxEntries+1: err = %v, want ErrFormat", err)
	}
}

// allocated returns how many bytes of heap f allocates.

func TestParseTrailer(t *testing.T) {
	tr := func(hl uint32, magic string) []byte {
		return append(binary.LittleEndian.AppendUint32(nil, hl), magic...)
	}
	minHL := int64(crypto.Overhead + headerFixed)
	if hl, err := ParseTrailer(tr(uint32(minHL), trailerMagic), minHL+TrailerSize); err != nil || hl != minHL {
		t.Fatalf("smallest pack: %d %v", hl, err)
	}
	if hl, err := ParseTrailer(tr(500, trailerMagic), 10000); err != nil || hl != 500 {
		t.Fatalf("%d %v", hl, err)
	}
	bad := []struct {
		name    string
		trailer []byte
		size    int64
	}{
		{"empty", nil, 100},
		{"short", tr(100, trailerMagic)[:7], 100},
		{"long", append(tr(100, trailerMagic), 0), 1000},
		{"magic", tr(100, "CPK2"), 1000},
		{"header magic", tr(100, headerMagic), 1000},
		{"header too small", tr(uint32(minHL-1), trailerMagic), 1000},
		{"header larger than pack", tr(100, trailerMagic), 107},
		{"zero", tr(0, trailerMagic), 1000},
		{"max", tr(math.MaxUint32, trailerMagic), 1 << 40 / 1024},
		{"negative size", tr(100, trailerMagic), -1},
		{"min negative size", tr(100, trailerMagic), math.MinInt64},
	}
	for _, c := range bad {
		if _, err := ParseTrailer(c.trailer, c.size); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", c.name, err)
		}
	}
}

func TestOpenHeaderRejects(t *testing.T) {
	s := testSealer(t)
	buf, _, _ := buildPack(t, s, 4)
	hl, err := ParseTrailer(buf[len(buf)-TrailerSize:], int64(len(buf)))
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(buf))
	sealed := buf[size-TrailerSize-hl : size-TrailerSize]
	// Blobs that do not fill the pack before the header, either way.
	for _, d := range []int64{-1, 1, 100, -size} {
		_, err := OpenHeader(s, sealed, size+d, "pack p")
		if !errors.Is(err, ErrFormat) {
			t.Errorf("pack size off by %d: err = %v, want ErrFormat", d, err)
		} else if !strings.Contains(err.Error(), "pack p") {
			t.Errorf("error %q does not name the pack", err)
		}
	}
	// A damaged header fails authentication.
	for i := range sealed {
		c := bytes.Clone(sealed)
		c[i] ^= 0x80
		if _, err := OpenHeader(s, c, size, "pack p"); !errors.Is(err, crypto.ErrAuth) {
			t.Fatalf("byte %d flipped: err = %v, want ErrAuth", i, err)
		}
	}
	// A header sealed with the wrong AD (a blob passed off as a header).
	blob := s.Seal(nil, EncodeHeader(nil), BlobAD(TypeData, idOf(0)))
	if _, err := OpenHeader(s, blob, int64(len(blob))+TrailerSize, "pack p"); !errors.Is(err, crypto.ErrAuth) {
		t.Errorf("header under a blob AD: err = %v", err)
	}
	// An authentic header whose plaintext is malformed is ErrFormat.
	junk := s.Seal(nil, []byte("CPH1junk"), headerAD)
	if _, err := OpenHeader(s, junk, int64(len(junk))+TrailerSize, "pack p"); !errors.Is(err, ErrFormat) {
		t.Errorf("malformed header plaintext: err = %v", err)
	}
	// An empty pack (no blobs) is well-formed.
	empty := s.Seal(nil, EncodeHeader(nil), headerAD)
	if e, err := OpenHeader(s, empty, int64(len(empty))+TrailerSize, "pack p"); err != nil || len(e) != 0 {
		t.Errorf("empty pack: %v %v", e, err)
	}
}

func TestIDs(t *testing.T) {
	id := Sum([]byte("pack"))
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID(String()) = %v, %v", got, err)
	}
	if got, err := ParseID(strings.ToUpper(id.String())); err != nil || got != id {
		t.Fatalf("upper case: %v", err)
	}
	for _, s := range []string{"", id.String()[:63], id.String() + "0", strings.Repeat("g", 64), strings.Repeat(" ", 64)} {
		if _, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) succeeded", s)
		}
	}
}

func TestBlobAD(t *testing.T) {
	ad := BlobAD(TypeMeta, idOf(5))
	if len(ad) != 1+crypto.IDSize || ad[0] != TypeMeta {
		t.Fatalf("BlobAD = %x", ad)
	}
	id := idOf(5)
	if !bytes.Equal(ad[1:], id[:]) {
		t.Fatal("BlobAD does not hold the ID")
	}
}
