package manifest

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/zeebo/blake3"
	"github.com/zeebo/xxh3"
)

// Geometry of a disk map. Part of the format (recorded per disk).
const (
	BlockSize       = 64 << 10 // digest and zero-detection granularity; XenServer CBT's block size
	BlocksPerRegion = 1024     // a region is 64 MiB
	RegionSize      = BlockSize * BlocksPerRegion
	ListFanout      = 1024 // region map IDs per list chunk
	digestContext   = "coffer disk digest v1"
)

// Hash is a 32-byte BLAKE3 hash: a region hash or a disk digest.
type Hash [32]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// BlockHashSize is the size of a block hash.
const BlockHashSize = 16

// BlockSum is the XXH3-128 hash of one block. Block hashes guard against
// accidental damage (a bug, a bad write, bit rot in an output), not against
// an adversary: what they are compared with comes from authenticated,
// keyed-hash-checked chunks, and they are themselves stored sealed. XXH3
// runs at memory speed, where BLAKE3 would cost a second per GiB on each
// backup and restore.
type BlockSum [BlockHashSize]byte

func (h BlockSum) String() string { return hex.EncodeToString(h[:]) }

// ParseHash decodes 64 hex characters.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 64 {
		return h, fmt.Errorf("hash %q is not 64 hex characters", s)
	}
	_, err := hex.Decode(h[:], []byte(s))
	return h, err
}

// zeroBlockHash is the hash of a whole block of zeros.
var zeroBlockHash = BlockHash(make([]byte, BlockSize))

// BlockHash returns the hash of one block (the last block of a disk may be
// shorter than BlockSize): XXH3-128, big-endian (high 64 bits first).
func BlockHash(b []byte) BlockSum { return xxh3.Hash128(b).Bytes() }

// ZeroBlockHash returns the hash of n zero bytes (n <= BlockSize).
func ZeroBlockHash(n int) BlockSum {
	if n == BlockSize {
		return zeroBlockHash
	}
	return BlockHash(make([]byte, n))
}

// RegionHash combines the block hashes of one region.
func RegionHash(blocks []BlockSum) Hash {
	h := blake3.New()
	for i := range blocks {
		_, _ = h.Write(blocks[i][:])
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// DiskDigest combines the region hashes of a disk of the given size into the
// whole-disk digest recorded in the snapshot.
func DiskDigest(size int64, regions []Hash) Hash {
	h := blake3.New()
	_, _ = h.WriteString(digestContext)
	var hdr [12]byte
	binary.LittleEndian.PutUint64(hdr[:], uint64(size))
	binary.LittleEndian.PutUint32(hdr[8:], BlockSize)
	_, _ = h.Write(hdr[:])
	for i := range regions {
		_, _ = h.Write(regions[i][:])
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

// Regions returns the number of regions of a disk.
func Regions(size int64) int { return int((size + RegionSize - 1) / RegionSize) }

// RegionBlocks returns the number of blocks in region r of a disk.
func RegionBlocks(size int64, r int) int {
	start := int64(r) * RegionSize
	n := min(size-start, RegionSize)
	return int((n + BlockSize - 1) / BlockSize)
}
