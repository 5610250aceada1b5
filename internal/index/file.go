package index

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/pack"
)

// File is the content of one index file: the blobs of some packs, and the
// index files it replaces (used by a later compaction; empty for now).
type File struct {
	Supersedes [][32]byte
	Packs      []PackBlobs
}

// PackBlobs lists the blobs of one pack.
type PackBlobs struct {
	Pack  pack.ID
	Blobs []pack.Entry
}

const (
	fileMagic     = "CIX1"
	fileEntrySize = 46
	// maxFileEntries bounds allocation when decoding a hostile file.
	maxFileEntries = 1 << 24
)

// ErrFormat is wrapped by every parse error.
var ErrFormat = errors.New("malformed index")

// AD is the associated data index files are sealed with.
var AD = []byte("coffer index v1")

// Encode returns the plaintext of an index file.
func (f *File) Encode() []byte {
	n := 12 + 32*len(f.Supersedes)
	for _, p := range f.Packs {
		n += 36 + fileEntrySize*len(p.Blobs)
	}
	out := make([]byte, 0, n)
	out = append(out, fileMagic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(f.Supersedes)))
	for _, s := range f.Supersedes {
		out = append(out, s[:]...)
	}
	out = binary.LittleEndian.AppendUint32(out, uint32(len(f.Packs)))
	for _, p := range f.Packs {
		out = append(out, p.Pack[:]...)
		out = binary.LittleEndian.AppendUint32(out, uint32(len(p.Blobs)))
		for _, b := range p.Blobs {
			out = append(out, b.ID[:]...)
			out = binary.LittleEndian.AppendUint32(out, b.Offset)
			out = binary.LittleEndian.AppendUint32(out, b.Length)
			out = binary.LittleEndian.AppendUint32(out, b.RawLength)
			out = append(out, b.Type, b.Flags)
		}
	}
	return out
}

// DecodeFile parses the plaintext of an index file.
func DecodeFile(b []byte) (*File, error) {
	r := reader{b: b}
	if string(r.next(4)) != fileMagic {
		return nil, fmt.Errorf("bad magic: %w", ErrFormat)
	}
	f := &File{}
	ns := r.u32()
	if uint64(ns)*32 > uint64(len(b)) {
		return nil, fmt.Errorf("%d superseded IDs do not fit: %w", ns, ErrFormat)
	}
	for i := uint32(0); i < ns && r.err == nil; i++ {
		var id [32]byte
		copy(id[:], r.next(32))
		f.Supersedes = append(f.Supersedes, id)
	}
	np := r.u32()
	if uint64(np)*36 > uint64(len(b)) {
		return nil, fmt.Errorf("%d packs do not fit: %w", np, ErrFormat)
	}
	total := 0
	for i := uint32(0); i < np && r.err == nil; i++ {
		var p PackBlobs
		copy(p.Pack[:], r.next(32))
		nb := r.u32()
		total += int(nb)
		if uint64(nb)*fileEntrySize > uint64(len(b)) || total > maxFileEntries {
			return nil, fmt.Errorf("pack %d: %d blobs do not fit: %w", i, nb, ErrFormat)
		}
		p.Blobs = make([]pack.Entry, 0, nb)
		for j := uint32(0); j < nb && r.err == nil; j++ {
			var e pack.Entry
			copy(e.ID[:], r.next(crypto.IDSize))
			e.Offset = r.u32()
			e.Length = r.u32()
			e.RawLength = r.u32()
			tf := r.next(2)
			if r.err != nil {
				break
			}
			e.Type, e.Flags = tf[0], tf[1]
			if e.Type > pack.TypeMeta || e.Flags&^pack.FlagZstd != 0 {
				return nil, fmt.Errorf("pack %s blob %d: unknown type %d or flags %#x: %w", p.Pack, j, e.Type, e.Flags, ErrFormat)
			}
			if e.Length < crypto.Overhead || e.Length > pack.MaxBlobLength || e.RawLength > pack.MaxBlobLength {
				return nil, fmt.Errorf("pack %s blob %d: length %d out of range: %w", p.Pack, j, e.Length, ErrFormat)
			}
			p.Blobs = append(p.Blobs, e)
		}
		f.Packs = append(f.Packs, p)
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes: %w", len(r.b), ErrFormat)
	}
	return f, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) next(n int) []byte {
	if r.err != nil {
		return make([]byte, n)
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("truncated: %w", ErrFormat)
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.next(4)) }
