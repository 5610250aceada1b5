package pack

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/crypto"
)

// Blob types.
const (
	TypeData uint8 = 0 // a chunk of disk data
	TypeMeta uint8 = 1 // a chunk of snapshot metadata (region maps, map lists)
)

// Blob flags.
const (
	FlagZstd uint8 = 1 << 0 // the sealed plaintext is a zstd frame
)

const (
	headerMagic   = "CPH1"
	trailerMagic  = "CPK1"
	TrailerSize   = 8
	EntrySize     = 44
	headerFixed   = 8 // magic + count
	MaxBlobLength = 1<<30 - 1
	// MaxEntries bounds a header so a hostile trailer cannot make a reader
	// allocate without limit: 64 MiB packs of 1-byte blobs stay well below.
	MaxEntries = 1 << 22
)

// ID is a pack's name: the SHA-256 of its bytes.
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID decodes a 64-character hex pack ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 {
		return id, fmt.Errorf("pack ID %q is not 64 hex characters", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("pack ID %q is not hex", s)
	}
	return id, nil
}

// Entry describes one blob in a pack.
type Entry struct {
	Type      uint8
	Flags     uint8
	Offset    uint32 // from the start of the pack
	Length    uint32 // sealed length, including crypto.Overhead
	RawLength uint32 // plaintext length after decompression
	ID        crypto.ID
}

// BlobAD is the associated data a blob is sealed with: its type and chunk ID,
// so a blob cannot be passed off as another.
func BlobAD(typ uint8, id crypto.ID) []byte {
	ad := make([]byte, 1+crypto.IDSize)
	ad[0] = typ
	copy(ad[1:], id[:])
	return ad
}

var headerAD = []byte("coffer pack header v1")

// Builder gathers sealed blobs into one pack in memory.
type Builder struct {
	buf     []byte
	entries []Entry
}

// NewBuilder returns a builder whose buffer starts with capacity sizeHint.
func NewBuilder(buf []byte) *Builder { return &Builder{buf: buf[:0]} }

// Add appends a sealed blob.
func (b *Builder) Add(typ, flags uint8, id crypto.ID, rawLen int, sealed []byte) {
	b.entries = append(b.entries, Entry{
		Type: typ, Flags: flags, Offset: uint32(len(b.buf)), Length: uint32(len(sealed)),
		RawLength: uint32(rawLen), ID: id,
	})
	b.buf = append(b.buf, sealed...)
}

// Reserve records a blob of sealedLen bytes and returns the part of the
// pack buffer it must be sealed into, so concurrent writers can seal in
// place without a copy. It reports false, recording nothing, when the
// buffer lacks the capacity: the buffer is never reallocated, so slices
// handed out stay valid. Finish must not run before every reserved slice is
// filled.
func (b *Builder) Reserve(typ, flags uint8, id crypto.ID, rawLen, sealedLen int) ([]byte, bool) {
	off := len(b.buf)
	if sealedLen > cap(b.buf)-off {
		return nil, false
	}
	b.buf = b.buf[:off+sealedLen]
	b.entries = append(b.entries, Entry{
		Type: typ, Flags: flags, Offset: uint32(off), Length: uint32(sealedLen),
		RawLength: uint32(rawLen), ID: id,
	})
	return b.buf[off : off+sealedLen : off+sealedLen], true
}

// Size is the number of blob bytes so far.
func (b *Builder) Size() int { return len(b.buf) }

// Count is the number of blobs so far.
func (b *Builder) Count() int { return len(b.entries) }

// Finish seals the header, appends it and the trailer, and returns the pack
// bytes and its entries; Sum gives its ID. The builder must not be used
// afterwards.
func (b *Builder) Finish(s *crypto.Sealer) ([]byte, []Entry) {
	hdr := EncodeHeader(b.entries)
	start := len(b.buf)
	b.buf = s.Seal(b.buf, hdr, headerAD)
	hl := len(b.buf) - start
	b.buf = binary.LittleEndian.AppendUint32(b.buf, uint32(hl))
	b.buf = append(b.buf, trailerMagic...)
	return b.buf, b.entries
}

// Sum returns the ID of a pack's bytes.
func Sum(b []byte) ID { return sha256.Sum256(b) }

// EncodeHeader encodes a header's plaintext.
func EncodeHeader(entries []Entry) []byte {
	out := make([]byte, headerFixed, headerFixed+len(entries)*EntrySize)
	copy(out, headerMagic)
	binary.LittleEndian.PutUint32(out[4:], uint32(len(entries)))
	for _, e := range entries {
		var rec [EntrySize]byte
		rec[0] = e.Type
		rec[1] = e.Flags
		binary.LittleEndian.PutUint32(rec[4:], e.Length)
		binary.LittleEndian.PutUint32(rec[8:], e.RawLength)
		copy(rec[12:], e.ID[:])
		out = append(out, rec[:]...)
	}
	return out
}

// ErrFormat is wrapped by every parse error of stored bytes.
var ErrFormat = errors.New("malformed")

// DecodeHeader parses a header's plaintext. Offsets are recomputed from the
// lengths, blobs being laid end to end from offset 0.
func DecodeHeader(b []byte) ([]Entry, error) {
	if len(b) < headerFixed || string(b[:4]) != headerMagic {
		return nil, fmt.Errorf("pack header: bad magic: %w", ErrFormat)
	}
	n := binary.LittleEndian.Uint32(b[4:])
	if n > MaxEntries || uint64(len(b)-headerFixed) != uint64(n)*EntrySize {
		return nil, fmt.Errorf("pack header: %d entries do not fit %d bytes: %w", n, len(b), ErrFormat)
	}
	entries := make([]Entry, n)
	var off uint64
	for i := range entries {
		rec := b[headerFixed+i*EntrySize:]
		e := &entries[i]
		e.Type, e.Flags = rec[0], rec[1]
		if rec[2] != 0 || rec[3] != 0 {
			return nil, fmt.Errorf("pack header entry %d: reserved bytes set: %w", i, ErrFormat)
		}
		if e.Type > TypeMeta || e.Flags&^FlagZstd != 0 {
			return nil, fmt.Errorf("pack header entry %d: unknown type %d or flags %#x: %w", i, e.Type, e.Flags, ErrFormat)
		}
		e.Length = binary.LittleEndian.Uint32(rec[4:])
		e.RawLength = binary.LittleEndian.Uint32(rec[8:])
		if e.Length < crypto.Overhead || e.Length > MaxBlobLength || e.RawLength > MaxBlobLength {
			return nil, fmt.Errorf("pack header entry %d: length %d out of range: %w", i, e.Length, ErrFormat)
		}
		copy(e.ID[:], rec[12:44])
		e.Offset = uint32(off)
		off += uint64(e.Length)
		if off > 1<<32-1 {
			return nil, fmt.Errorf("pack header: blobs exceed 4 GiB: %w", ErrFormat)
		}
	}
	return entries, nil
}

// ParseTrailer returns the sealed header's length from a pack's last
// TrailerSize bytes, checked against the pack size.
func ParseTrailer(trailer []byte, packSize int64) (int64, error) {
	if len(trailer) != TrailerSize || string(trailer[4:]) != trailerMagic {
		return 0, fmt.Errorf("pack trailer: bad magic: %w", ErrFormat)
	}
	hl := int64(binary.LittleEndian.Uint32(trailer))
	if hl < crypto.Overhead+headerFixed || hl+TrailerSize > packSize {
		return 0, fmt.Errorf("pack trailer: header length %d does not fit a pack of %d bytes: %w", hl, packSize, ErrFormat)
	}
	return hl, nil
}

// OpenHeader authenticates and parses a sealed header and checks that its
// blobs exactly fill the pack before the header.
func OpenHeader(s *crypto.Sealer, sealed []byte, packSize int64, what string) ([]Entry, error) {
	plain, err := s.Open(nil, sealed, headerAD, what+" header")
	if err != nil {
		return nil, err
	}
	entries, err := DecodeHeader(plain)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var end int64
	if n := len(entries); n > 0 {
		end = int64(entries[n-1].Offset) + int64(entries[n-1].Length)
	}
	if end+int64(len(sealed))+TrailerSize != packSize {
		return nil, fmt.Errorf("%s: blobs end at %d but the header starts at %d: %w", what, end, packSize-int64(len(sealed))-TrailerSize, ErrFormat)
	}
	return entries, nil
}
