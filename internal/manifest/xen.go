package manifest

import (
	"encoding/hex"
	"fmt"
	"regexp"

	"github.com/cofferhq/coffer/crypto"
)

// XenVM says which XenServer VM a snapshot holds. Set on the Source of a
// snapshot of Kind "xen".
type XenVM struct {
	Pool string `json:"pool"` // the pool's UUID
	VM   string `json:"vm"`   // the VM's UUID
	Name string `json:"name"` // the VM's name_label when it was backed up
	// Snapshot is the UUID of the XenServer snapshot that was read.
	Snapshot string `json:"snapshot"`
	// Metadata is the ID (hex) of the metadata chunk holding the VM's
	// export_metadata archive (a tar with ova.xml); MetadataSize its length.
	Metadata     string `json:"metadata,omitempty"`
	MetadataSize int64  `json:"metadata_size,omitempty"`
}

// MetadataID returns the metadata chunk's ID, and false when the snapshot
// holds none or its ID is not 64 hex characters.
func (x *XenVM) MetadataID() (crypto.ID, bool) {
	var id crypto.ID
	if x == nil || len(x.Metadata) != 2*crypto.IDSize {
		return id, false
	}
	if _, err := hex.Decode(id[:], []byte(x.Metadata)); err != nil {
		return id, false
	}
	return id, true
}

// XenDisk says which VDI a disk of a "xen" snapshot was read from and how.
type XenDisk struct {
	VDI         string `json:"vdi"`          // the VM's VDI (UUID)
	SnapshotVDI string `json:"snapshot_vdi"` // the snapshot VDI read (UUID)
	UserDevice  string `json:"userdevice"`   // the VBD's position, "0", "1", ...
	Label       string `json:"label,omitempty"`
	// Read is "changed" when only the blocks changed since BaseVDI were
	// read (changed block tracking), "full" when the whole disk was.
	Read          string `json:"read"`
	Reason        string `json:"reason,omitempty"` // why a full read
	BaseVDI       string `json:"base_vdi,omitempty"`
	ChangedBlocks int64  `json:"changed_blocks,omitempty"`
	// Kept says what of SnapshotVDI stays in the pool as the next night's
	// base: "metadata" (its changed-block log only), "data" (the whole
	// snapshot, after a full read) or "none" (changed block tracking is
	// off: nothing is kept).
	Kept string `json:"kept"`
}

// The values of XenDisk.Read and XenDisk.Kept.
const (
	XenReadChanged = "changed"
	XenReadFull    = "full"
	XenKeptMeta    = "metadata"
	XenKeptData    = "data"
	XenKeptNone    = "none"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ValidUUID reports whether s is a lower-case UUID as xapi writes them.
func ValidUUID(s string) bool { return uuidRE.MatchString(s) }

func (x *XenVM) check() error {
	for _, u := range []string{x.Pool, x.VM, x.Snapshot} {
		if !ValidUUID(u) {
			return fmt.Errorf("xen source: %q is not a UUID: %w", u, ErrFormat)
		}
	}
	if x.Metadata != "" && (len(x.Metadata) != 64 || !isLowerHex(x.Metadata)) {
		return fmt.Errorf("xen source: metadata ID %q is not 64 lower-case hex characters: %w", x.Metadata, ErrFormat)
	}
	return nil
}

func (x *XenDisk) check() error {
	for _, u := range []string{x.VDI, x.SnapshotVDI} {
		if !ValidUUID(u) {
			return fmt.Errorf("xen disk: %q is not a UUID: %w", u, ErrFormat)
		}
	}
	if x.BaseVDI != "" && !ValidUUID(x.BaseVDI) {
		return fmt.Errorf("xen disk: base %q is not a UUID: %w", x.BaseVDI, ErrFormat)
	}
	switch {
	case x.Read != XenReadChanged && x.Read != XenReadFull:
		return fmt.Errorf("xen disk: read %q is neither %q nor %q: %w", x.Read, XenReadChanged, XenReadFull, ErrFormat)
	case x.Kept != XenKeptMeta && x.Kept != XenKeptData && x.Kept != XenKeptNone:
		return fmt.Errorf("xen disk: kept %q is not one of metadata, data, none: %w", x.Kept, ErrFormat)
	}
	return nil
}
