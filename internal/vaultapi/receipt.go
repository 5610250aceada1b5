package vaultapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"
)

// ReceiptVersion is the version of the receipt format this code writes.
const ReceiptVersion = 1

// MaxReceiptSize bounds a receipt object: about 240,000 packs.
const MaxReceiptSize = 16 << 20

// maxReceiptDisks bounds the disks of one receipt (a VM has at most a few
// dozen; xapi allows 255 VBDs).
const maxReceiptDisks = 256

// maxDiskSize is the largest disk a receipt may describe (1 PiB, as the
// snapshot format allows).
const maxDiskSize = 1 << 50

// Receipt is what the vault may know of a snapshot without the tenant's
// keys. The agent writes one, as plain JSON, under receipts/<sha256>
// before the snapshot it describes; the vault checks it when it is
// stored (the packs exist, the sizes are plausible) and works from
// receipts alone for retention, garbage collection, RPO status and usage.
//
// An agent can lie in a receipt only about its own tenant: the packs a
// receipt names keep that tenant's packs alive, never another's.
type Receipt struct {
	Version int `json:"version"`
	// Snapshot is the snapshot's ID: the object snapshots/<Snapshot>.
	Snapshot string `json:"snapshot"`
	// Name is the snapshot's name as the tenant chose it (a VM's name, an
	// image's name): the unit of retention and of RPO.
	Name string `json:"name"`
	// Time is the snapshot's time.
	Time time.Time `json:"time"`
	// Source is "image" or "xen".
	Source string `json:"source"`
	// Disks are the snapshot's disks in order.
	Disks []ReceiptDisk `json:"disks"`
	// Packs are the IDs of every pack the snapshot needs (its chunks, its
	// region maps and map lists, a VM's metadata), sorted, each once.
	Packs []string `json:"packs"`
	// Seed names the seed the snapshot waits on, when some of its packs
	// travel on a shipped disk; empty otherwise.
	Seed string `json:"seed,omitempty"`
}

// ReceiptDisk is one disk of a receipt.
type ReceiptDisk struct {
	Size      int64 `json:"size"`       // the disk's size in bytes
	DataBytes int64 `json:"data_bytes"` // bytes that are not holes or zeros
}

// ErrBadReceipt is wrapped by every ParseReceipt and Validate error.
var ErrBadReceipt = errors.New("bad receipt")

// ParseReceipt decodes a receipt strictly: unknown fields, trailing data,
// and any value Validate refuses are errors wrapping ErrBadReceipt.
func ParseReceipt(b []byte) (*Receipt, error) {
	if len(b) > MaxReceiptSize {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadReceipt, len(b), MaxReceiptSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r Receipt
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReceipt, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrBadReceipt)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Marshal encodes a valid receipt.
func (r *Receipt) Marshal() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

// Validate checks every field against the format's rules.
func (r *Receipt) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadReceipt, fmt.Sprintf(format, a...))
	}
	switch {
	case r.Version != ReceiptVersion:
		return bad("version %d (this vault reads version %d)", r.Version, ReceiptVersion)
	case !isHex64(r.Snapshot):
		return bad("snapshot %q is not 64 lower-case hex digits", clip(r.Snapshot))
	case r.Source != "image" && r.Source != "xen":
		return bad("source %q (want image or xen)", clip(r.Source))
	case r.Time.Year() < 1970 || r.Time.Year() > 9999:
		return bad("time %s is not plausible", r.Time.Format(time.RFC3339))
	case len(r.Disks) == 0 || len(r.Disks) > maxReceiptDisks:
		return bad("%d disks (want 1 to %d)", len(r.Disks), maxReceiptDisks)
	case r.Seed != "" && !isHex64(r.Seed):
		return bad("seed %q is not 64 lower-case hex digits", clip(r.Seed))
	}
	if err := ValidReceiptName(r.Name); err != nil {
		return fmt.Errorf("%w: %v", ErrBadReceipt, err)
	}
	for i, d := range r.Disks {
		if d.Size < 0 || d.Size > maxDiskSize || d.DataBytes < 0 || d.DataBytes > d.Size {
			return bad("disk %d: size %d with %d data bytes is not plausible", i, d.Size, d.DataBytes)
		}
	}
	for i, p := range r.Packs {
		if !isHex64(p) {
			return bad("pack %d: %q is not 64 lower-case hex digits", i, clip(p))
		}
		if i > 0 && r.Packs[i-1] >= p {
			return bad("packs are not sorted and unique at %d (%s)", i, p)
		}
	}
	return nil
}

// ValidReceiptName checks a snapshot name as a receipt carries it: 1 to
// 256 bytes of UTF-8 without control characters.
func ValidReceiptName(s string) error {
	if s == "" || len(s) > 256 || !utf8.ValidString(s) {
		return fmt.Errorf("name %q: want 1 to 256 bytes of UTF-8", clip(s))
	}
	if i := slices.IndexFunc([]rune(s), unicode.IsControl); i >= 0 {
		return fmt.Errorf("name %q has a control character", clip(s))
	}
	return nil
}

// ReceiptRejection is the body detail of a refused receipt: the packs it
// names that the vault does not hold or is deleting, so the agent can stop
// deduplicating against them and back up again.
type ReceiptRejection struct {
	Missing  []string `json:"missing,omitempty"`
	Deleting []string `json:"deleting,omitempty"`
}

// SessionInfo answers the start of an upload session: garbage collection
// keeps every pack marked after Started while the session's heartbeats
// (every Heartbeat, at the latest) arrive. Unusable are the packs the agent
// must not deduplicate against (marked, being deleted or deleted): their
// chunks are uploaded again if needed.
type SessionInfo struct {
	ID        string    `json:"id"`
	Started   time.Time `json:"started"`
	Heartbeat int       `json:"heartbeat_seconds"`
	Unusable  []string  `json:"unusable"`
}
