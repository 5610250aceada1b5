package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/cofferhq/coffer/crypto"
)

// Fuzz targets for every parser of stored pack bytes. Each must never panic,
// must wrap ErrFormat (or crypto.ErrAuth behind the AEAD) in every error, and
// must accept only canonical encodings.

func seedHeaders() [][]byte {
	return [][]byte{
		EncodeHeader(nil),
		EncodeHeader([]Entry{{Type: TypeData, Length: crypto.Overhead, ID: idOf(1)}}),
		EncodeHeader([]Entry{
			{Type: TypeData, Flags: FlagZstd, Length: 1000, RawLength: 4000, ID: idOf(1)},
			{Type: TypeMeta, Length: 77, RawLength: 37, ID: idOf(2)},
			{Type: TypeData, Length: MaxBlobLength, RawLength: MaxBlobLength, ID: idOf(3)},
		}),
	}
}

// checkEntries asserts what DecodeHeader promises of the entries it returns.
func checkEntries(t *testing.T, entries []Entry) {
	t.Helper()
	var off uint64
	for i, e := range entries {
		if uint64(e.Offset) != off {
			t.Fatalf("entry %d at offset %d, want %d", i, e.Offset, off)
		}
		if e.Type > TypeMeta || e.Flags&^FlagZstd != 0 || e.Length < crypto.Overhead || e.Length > MaxBlobLength || e.RawLength > MaxBlobLength {
			t.Fatalf("entry %d accepted out of range: %+v", i, e)
		}
		off += uint64(e.Length)
	}
	if off > 1<<32-1 {
		t.Fatalf("accepted blobs ending at %d", off)
	}
}

func FuzzDecodeHeader(f *testing.F) {
	for _, h := range seedHeaders() {
		f.Add(h)
	}
	f.Add([]byte("CPH1\xff\xff\xff\x7f"))
	f.Add([]byte("CPH1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := DecodeHeader(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		if len(b) != headerFixed+len(entries)*EntrySize {
			t.Fatalf("%d entries from %d bytes", len(entries), len(b))
		}
		checkEntries(t, entries)
		if re := EncodeHeader(entries); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, re)
		}
	})
}

func FuzzParseTrailer(f *testing.F) {
	tr := func(hl uint32) []byte { return append(binary.LittleEndian.AppendUint32(nil, hl), trailerMagic...) }
	f.Add(tr(48), int64(56))
	f.Add(tr(48+44*3), int64(10000))
	f.Add(tr(1<<32-1), int64(1<<40))
	f.Add(tr(100), int64(-1))
	f.Add([]byte("\x00\x00\x00\x00CPH1"), int64(100))
	f.Fuzz(func(t *testing.T, trailer []byte, packSize int64) {
		hl, err := ParseTrailer(trailer, packSize)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		if len(trailer) != TrailerSize || string(trailer[4:]) != trailerMagic {
			t.Fatalf("accepted trailer %q", trailer)
		}
		if hl < crypto.Overhead+headerFixed || hl > packSize-TrailerSize || packSize < TrailerSize+hl {
			t.Fatalf("header length %d accepted for a pack of %d bytes", hl, packSize)
		}
		if hl != int64(binary.LittleEndian.Uint32(trailer)) {
			t.Fatalf("header length %d, trailer says %d", hl, binary.LittleEndian.Uint32(trailer))
		}
	})
}

// fuzzKey is the fixed key of the OpenHeader fuzz targets, so that corpus
// files sealed under it stay authentic.
var fuzzKey = bytes.Repeat([]byte{0x17}, crypto.KeySize)

// FuzzOpenHeader fuzzes the sealed header bytes and the pack size. Almost
// every input fails authentication; the seeds are authentic headers, so the
// fuzzer also explores pack sizes around the right one.
func FuzzOpenHeader(f *testing.F) {
	s, err := crypto.NewSealer(fuzzKey)
	if err != nil {
		f.Fatal(err)
	}
	for _, h := range seedHeaders() {
		sealed := s.Seal(nil, h, headerAD)
		entries, _ := DecodeHeader(h)
		var blobs int64
		for _, e := range entries {
			blobs += int64(e.Length)
		}
		f.Add(sealed, blobs+int64(len(sealed))+TrailerSize)
		f.Add(sealed, blobs+int64(len(sealed)))
	}
	f.Fuzz(func(t *testing.T, sealed []byte, packSize int64) {
		entries, err := OpenHeader(s, sealed, packSize, "pack fuzz")
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, crypto.ErrAuth) {
				t.Fatalf("error wraps neither ErrFormat nor ErrAuth: %v", err)
			}
			return
		}
		checkOpened(t, entries, len(sealed), packSize)
	})
}

// FuzzOpenHeaderPlain seals fuzzed plaintext under the fixed key, so the
// decoder and the fill check behind the AEAD are reached. blobBytes sets
// the pack size relative to the header.
func FuzzOpenHeaderPlain(f *testing.F) {
	s, err := crypto.NewSealer(fuzzKey)
	if err != nil {
		f.Fatal(err)
	}
	for _, h := range seedHeaders() {
		entries, _ := DecodeHeader(h)
		var blobs int64
		for _, e := range entries {
			blobs += int64(e.Length)
		}
		f.Add(h, blobs)
		f.Add(h, blobs+1)
		f.Add(h, blobs-1)
	}
	f.Fuzz(func(t *testing.T, plain []byte, blobBytes int64) {
		sealed := s.Seal(nil, plain, headerAD)
		packSize := blobBytes + int64(len(sealed)) + TrailerSize
		entries, err := OpenHeader(s, sealed, packSize, "pack fuzz")
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("authentic header: error does not wrap ErrFormat: %v", err)
			}
			if errors.Is(err, crypto.ErrAuth) {
				t.Fatalf("authentic header failed authentication: %v", err)
			}
			return
		}
		checkOpened(t, entries, len(sealed), packSize)
		if re := EncodeHeader(entries); !bytes.Equal(re, plain) {
			t.Fatalf("re-encoding differs:\n%x\n%x", plain, re)
		}
	})
}

func checkOpened(t *testing.T, entries []Entry, sealedLen int, packSize int64) {
	t.Helper()
	checkEntries(t, entries)
	var end int64
	for _, e := range entries {
		end += int64(e.Length)
	}
	if end+int64(sealedLen)+TrailerSize != packSize {
		t.Fatalf("accepted blobs of %d bytes + header %d in a pack of %d", end, sealedLen, packSize)
	}
}
