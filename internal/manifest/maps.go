package manifest

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/crypto"
)

// ErrFormat is wrapped by every parse error.
var ErrFormat = errors.New("malformed")

// Extent is one chunk of a region: Length bytes at region-relative Offset.
// Bytes of the region covered by no extent are zero.
type Extent struct {
	Offset uint32
	Length uint32
	ID     crypto.ID
}

// RegionMap describes one region of a disk: its chunks and the hash of each
// of its blocks. It is stored as a metadata blob, so identical regions of
// successive nights share one stored map.
type RegionMap struct {
	Extents []Extent
	Blocks  []BlockSum
}

const (
	regionMagic = "CRM1"
	listMagic   = "CRL1"
	extentSize  = 8 + crypto.IDSize
)

// Encode returns the region map's bytes.
func (m *RegionMap) Encode() []byte {
	out := make([]byte, 0, 12+extentSize*len(m.Extents)+BlockHashSize*len(m.Blocks))
	out = append(out, regionMagic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(m.Extents)))
	out = binary.LittleEndian.AppendUint32(out, uint32(len(m.Blocks)))
	for _, e := range m.Extents {
		out = binary.LittleEndian.AppendUint32(out, e.Offset)
		out = binary.LittleEndian.AppendUint32(out, e.Length)
		out = append(out, e.ID[:]...)
	}
	for _, b := range m.Blocks {
		out = append(out, b[:]...)
	}
	return out
}

// DecodeRegionMap parses a region map and checks that its extents are in
// order, do not overlap, and fit a region of regionLen bytes, and that it has
// one hash per block.
func DecodeRegionMap(b []byte, regionLen int64) (*RegionMap, error) {
	if len(b) < 12 || string(b[:4]) != regionMagic {
		return nil, fmt.Errorf("region map: bad magic: %w", ErrFormat)
	}
	ne := binary.LittleEndian.Uint32(b[4:])
	nb := binary.LittleEndian.Uint32(b[8:])
	if uint64(len(b)-12) != uint64(ne)*extentSize+uint64(nb)*BlockHashSize {
		return nil, fmt.Errorf("region map: %d extents and %d blocks do not fit %d bytes: %w", ne, nb, len(b), ErrFormat)
	}
	wantBlocks := (regionLen + BlockSize - 1) / BlockSize
	if regionLen < 0 || int64(nb) != wantBlocks {
		return nil, fmt.Errorf("region map: %d block hashes for a region of %d bytes, want %d: %w", nb, regionLen, wantBlocks, ErrFormat)
	}
	m := &RegionMap{Extents: make([]Extent, ne), Blocks: make([]BlockSum, nb)}
	p := b[12:]
	var end uint64
	for i := range m.Extents {
		e := &m.Extents[i]
		e.Offset = binary.LittleEndian.Uint32(p)
		e.Length = binary.LittleEndian.Uint32(p[4:])
		copy(e.ID[:], p[8:extentSize])
		p = p[extentSize:]
		if e.Length == 0 || uint64(e.Offset) < end || uint64(e.Offset)+uint64(e.Length) > uint64(regionLen) {
			return nil, fmt.Errorf("region map: extent %d (%d+%d) overlaps or leaves the region: %w", i, e.Offset, e.Length, ErrFormat)
		}
		end = uint64(e.Offset) + uint64(e.Length)
	}
	for i := range m.Blocks {
		copy(m.Blocks[i][:], p)
		p = p[BlockHashSize:]
	}
	return m, nil
}

// EncodeList returns the bytes of a list chunk: up to ListFanout region map IDs.
func EncodeList(ids []crypto.ID) []byte {
	out := make([]byte, 0, 8+len(ids)*crypto.IDSize)
	out = append(out, listMagic...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(ids)))
	for _, id := range ids {
		out = append(out, id[:]...)
	}
	return out
}

// DecodeList parses a list chunk.
func DecodeList(b []byte) ([]crypto.ID, error) {
	if len(b) < 8 || string(b[:4]) != listMagic {
		return nil, fmt.Errorf("map list: bad magic: %w", ErrFormat)
	}
	n := binary.LittleEndian.Uint32(b[4:])
	if n == 0 || n > ListFanout || uint64(len(b)-8) != uint64(n)*crypto.IDSize {
		return nil, fmt.Errorf("map list: %d IDs do not fit %d bytes: %w", n, len(b), ErrFormat)
	}
	ids := make([]crypto.ID, n)
	for i := range ids {
		copy(ids[i][:], b[8+i*crypto.IDSize:])
	}
	return ids, nil
}
