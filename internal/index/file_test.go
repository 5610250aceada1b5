package index

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/testutil/allocs"
)

// filesEqual compares index files, treating nil and empty lists alike.
func filesEqual(a, b *File) bool {
	if !slices.Equal(a.Supersedes, b.Supersedes) || len(a.Packs) != len(b.Packs) {
		return false
	}
	for i := range a.Packs {
		if a.Packs[i].Pack != b.Packs[i].Pack || !slices.Equal(a.Packs[i].Blobs, b.Packs[i].Blobs) {
			return false
		}
	}
	return true
}

func sampleFile() *File {
	g := newGen(7)
	return &File{
		Supersedes: [][32]byte{{9}},
		Packs: []PackBlobs{
			{Pack: g.packID(), Blobs: g.pack(3)},
			{Pack: g.packID(), Blobs: nil},
			{Pack: g.packID(), Blobs: g.pack(1)},
		},
	}
}

func TestFileEncodeLayout(t *testing.T) {
	f := sampleFile()
	b := f.Encode()
	if want := 4 + 4 + 32 + 4 + 3*36 + 4*fileEntrySize; len(b) != want {
		t.Fatalf("encoded %d bytes, want %d", len(b), want)
	}
	if string(b[:4]) != "CIX1" {
		t.Fatalf("magic %q", b[:4])
	}
	empty := (&File{}).Encode()
	if !bytes.Equal(empty, []byte("CIX1\x00\x00\x00\x00\x00\x00\x00\x00")) {
		t.Fatalf("empty file encodes as %x", empty)
	}
	got, err := DecodeFile(empty)
	if err != nil || len(got.Packs) != 0 || len(got.Supersedes) != 0 {
		t.Fatalf("empty file: %+v, %v", got, err)
	}
}

func TestDecodeFileEveryPrefixFails(t *testing.T) {
	b := sampleFile().Encode()
	for n := 0; n < len(b); n++ {
		if _, err := DecodeFile(b[:n]); !errors.Is(err, ErrFormat) {
			t.Fatalf("prefix of %d bytes: err = %v, want ErrFormat", n, err)
		}
	}
	if _, err := DecodeFile(append(b, 0)); !errors.Is(err, ErrFormat) {
		t.Fatalf("trailing byte: err = %v", err)
	}
}

func TestDecodeFileRejects(t *testing.T) {
	f := &File{Packs: []PackBlobs{{Pack: pack.ID{1}, Blobs: []pack.Entry{{ID: crypto.ID{2}, Length: 100, RawLength: 50}}}}}
	good := f.Encode()
	// Offsets of the one blob's fields.
	const blob = 4 + 4 + 4 + 32 + 4
	const length, raw, typ, flags = blob + 32 + 4, blob + 32 + 8, blob + 32 + 12, blob + 32 + 13
	mod := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	cases := map[string][]byte{
		"bad magic":        mod(func(b []byte) { b[3] = '2' }),
		"unknown type":     mod(func(b []byte) { b[typ] = 2 }),
		"unknown flag":     mod(func(b []byte) { b[flags] = 0x80 }),
		"length too small": mod(func(b []byte) { binary.LittleEndian.PutUint32(b[length:], crypto.Overhead-1) }),
		"length too big":   mod(func(b []byte) { binary.LittleEndian.PutUint32(b[length:], pack.MaxBlobLength+1) }),
		"raw too big":      mod(func(b []byte) { binary.LittleEndian.PutUint32(b[raw:], pack.MaxBlobLength+1) }),
		"one blob too few": mod(func(b []byte) { b[blob-4] = 0 }),
		"one blob more":    mod(func(b []byte) { b[blob-4] = 2 }),
		"one pack more":    mod(func(b []byte) { b[8] = 2 }),
		"one supersede":    mod(func(b []byte) { b[4] = 1 }),
	}
	for name, b := range cases {
		if _, err := DecodeFile(b); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
	if _, err := DecodeFile(good); err != nil {
		t.Fatalf("the unmodified file: %v", err)
	}
}

// TestDecodeFileHugeCounts: counts of 2^31 (or 2^32-1) in a 100-byte file are
// rejected without allocating for them.
func TestDecodeFileHugeCounts(t *testing.T) {
	for _, n := range []uint32{1 << 31, 1<<32 - 1, 1 << 24} {
		cases := map[string][]byte{}
		b := make([]byte, 100)
		copy(b, fileMagic)
		binary.LittleEndian.PutUint32(b[4:], n)
		cases["supersedes"] = b
		b = make([]byte, 100)
		copy(b, fileMagic)
		binary.LittleEndian.PutUint32(b[8:], n)
		cases["packs"] = b
		b = make([]byte, 100)
		copy(b, fileMagic)
		binary.LittleEndian.PutUint32(b[8:], 1)
		binary.LittleEndian.PutUint32(b[12+32:], n)
		cases["blobs"] = b
		for name, b := range cases {
			var err error
			if a := allocs.Least(func() { _, err = DecodeFile(b) }); a > 8192 {
				t.Errorf("%s = %d: allocated %d bytes for a 100-byte file", name, n, a)
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("%s = %d: err = %v, want ErrFormat", name, n, err)
			}
		}
	}
}

// TestDecodeFileManyPacksTruncated: a file claiming many packs that each claim
// as many blobs as fit allocates in proportion to its size, not to the claims.
func TestDecodeFileManyPacksTruncated(t *testing.T) {
	const size = 1 << 20
	b := make([]byte, size)
	copy(b, fileMagic)
	np := uint32(size / 36)
	binary.LittleEndian.PutUint32(b[8:], np)
	// Every pack header claims the most blobs that fit the file; the zero
	// bytes after it decode as blobs with length 0, which is rejected.
	binary.LittleEndian.PutUint32(b[12+32:], uint32(size/fileEntrySize))
	var err error
	if a := allocs.Least(func() { _, err = DecodeFile(b) }); a > 4*size {
		t.Errorf("allocated %d bytes for a %d-byte file", a, size)
	}
	if !errors.Is(err, ErrFormat) {
		t.Fatalf("err = %v, want ErrFormat", err)
	}
}
