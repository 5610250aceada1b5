package manifest

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/cofferhq/coffer/crypto"
)

// SnapshotVersion is the snapshot document version this code writes.
const SnapshotVersion = 1

// SnapshotAD is the associated data snapshot documents are sealed with.
var SnapshotAD = []byte("coffer snapshot v1")

// MaxDiskSize bounds a disk's size (1 PiB).
const MaxDiskSize = 1 << 50

// Snapshot is the document that makes a backup exist. It is written last,
// after every blob it refers to is stored and indexed.
type Snapshot struct {
	Version int       `json:"version"`
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Name    string    `json:"name"`
	Tags    []string  `json:"tags,omitempty"`
	Source  Source    `json:"source"`
	// Parent is the snapshot this one was compared against, if any.
	Parent string `json:"parent,omitempty"`
	Disks  []Disk `json:"disks"`
}

// Source says where the disks came from.
type Source struct {
	Kind string `json:"kind"` // "image" (a file or block device) or "xen" (a XenServer VM)
	Path string `json:"path,omitempty"`
	Xen  *XenVM `json:"xen,omitempty"` // set for Kind "xen"
}

// Disk is one backed-up disk.
type Disk struct {
	Index      int    `json:"index"`
	Name       string `json:"name"`
	Size       int64  `json:"size"`
	BlockSize  int    `json:"block_size"`
	RegionSize int64  `json:"region_size"`
	// Digest is the whole-disk digest (see DiskDigest), hex.
	Digest string `json:"digest"`
	// Lists are the IDs (hex) of the list chunks naming the region maps, in
	// disk order.
	Lists []string  `json:"lists"`
	Stats DiskStats `json:"stats"`
	Xen   *XenDisk  `json:"xen,omitempty"` // set in a snapshot of Kind "xen"
	// Chunking is how the disk's runs of data were cut into chunks.
	Chunking Chunking `json:"chunking,omitempty"`
}

// Chunking is how a disk's runs of non-zero blocks are cut into chunks.
// Readers never need it (region maps list every chunk); a changed-block
// backup does, to cut the changed blocks the way a full read would.
type Chunking string

const (
	// ChunkingContent cuts with the repository's content-defined chunker
	// (its config's "chunker"), restarted at every run: image files and
	// block devices, whose data may shift.
	ChunkingContent Chunking = ""
	// ChunkingBlocks makes every block (BlockSize, the last block of a
	// disk may be shorter) one chunk: VM disks, which are written and
	// tracked in place, block by block, so that a changed block is one new
	// chunk and nothing around it is cut again.
	ChunkingBlocks Chunking = "blocks"
)

// Valid reports whether c is a chunking this code knows.
func (c Chunking) Valid() bool { return c == ChunkingContent || c == ChunkingBlocks }

// String names the chunking for people.
func (c Chunking) String() string {
	if c == ChunkingBlocks {
		return "64 KiB blocks"
	}
	return "content-defined chunks"
}

// DiskStats are counters recorded at backup time.
type DiskStats struct {
	DataBytes   int64 `json:"data_bytes"`   // bytes in chunks (not zero)
	ReadBytes   int64 `json:"read_bytes"`   // bytes read from the source
	NewBytes    int64 `json:"new_bytes"`    // plaintext bytes of new chunks
	StoredBytes int64 `json:"stored_bytes"` // bytes of the packs the backup uploaded
	Chunks      int64 `json:"chunks"`
	NewChunks   int64 `json:"new_chunks"`
}

// ListIDs decodes the disk's list chunk IDs.
func (d *Disk) ListIDs() ([]crypto.ID, error) {
	ids := make([]crypto.ID, len(d.Lists))
	for i, s := range d.Lists {
		if len(s) != 2*crypto.IDSize {
			return nil, fmt.Errorf("disk %d: list ID %q is not %d hex characters: %w", d.Index, s, 2*crypto.IDSize, ErrFormat)
		}
		if _, err := hex.Decode(ids[i][:], []byte(s)); err != nil || !isLowerHex(s) {
			return nil, fmt.Errorf("disk %d: list ID %q is not lower-case hex: %w", d.Index, s, ErrFormat)
		}
	}
	return ids, nil
}

// DigestHash decodes the disk digest.
func (d *Disk) DigestHash() (Hash, error) { return ParseHash(d.Digest) }

// ValidName checks a snapshot or disk name: 1 to 128 printable characters.
func ValidName(s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("name %q must be 1 to 128 characters", s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("name %q has a non-printable character", s)
		}
	}
	return nil
}

// Marshal encodes the snapshot document.
func (s *Snapshot) Marshal() ([]byte, error) { return json.Marshal(s) }

// DecodeSnapshot parses and validates a snapshot document.
func DecodeSnapshot(b []byte) (*Snapshot, error) {
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("snapshot document: %v: %w", err, ErrFormat)
	}
	if s.Version != SnapshotVersion {
		return nil, fmt.Errorf("snapshot document version %d; this coffer reads version %d: %w", s.Version, SnapshotVersion, ErrFormat)
	}
	if err := ValidName(s.Name); err != nil {
		return nil, fmt.Errorf("snapshot: %v: %w", err, ErrFormat)
	}
	if len(s.Disks) == 0 {
		return nil, fmt.Errorf("snapshot has no disks: %w", ErrFormat)
	}
	if s.Source.Xen != nil {
		if err := s.Source.Xen.check(); err != nil {
			return nil, err
		}
	}
	for i := range s.Disks {
		d := &s.Disks[i]
		if d.Index != i {
			return nil, fmt.Errorf("disk %d has index %d: %w", i, d.Index, ErrFormat)
		}
		if d.Size < 0 || d.Size > MaxDiskSize {
			return nil, fmt.Errorf("disk %d: size %d out of range: %w", i, d.Size, ErrFormat)
		}
		if d.BlockSize != BlockSize || d.RegionSize != RegionSize {
			return nil, fmt.Errorf("disk %d: block size %d / region size %d not supported: %w", i, d.BlockSize, d.RegionSize, ErrFormat)
		}
		if !d.Chunking.Valid() {
			return nil, fmt.Errorf("disk %d: unknown chunking %q: %w", i, d.Chunking, ErrFormat)
		}
		if want := (Regions(d.Size) + ListFanout - 1) / ListFanout; len(d.Lists) != want {
			return nil, fmt.Errorf("disk %d: %d map lists for %d bytes, want %d: %w", i, len(d.Lists), d.Size, want, ErrFormat)
		}
		if _, err := d.ListIDs(); err != nil {
			return nil, err
		}
		if d.Xen != nil {
			if err := d.Xen.check(); err != nil {
				return nil, fmt.Errorf("disk %d: %w", i, err)
			}
		}
		if _, err := d.DigestHash(); err != nil || !isLowerHex(d.Digest) {
			return nil, fmt.Errorf("disk %d: digest %q is not 64 lower-case hex characters: %w", i, d.Digest, ErrFormat)
		}
	}
	return &s, nil
}

// isLowerHex reports whether s holds no upper-case hex digit: IDs and
// digests have one spelling (FORMAT.md), and they are compared as strings.
func isLowerHex(s string) bool { return strings.ToLower(s) == s }
