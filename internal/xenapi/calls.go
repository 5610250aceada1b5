package xenapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// getRecord calls class.get_record(ref) and decodes it into dst.
func (s *Session) getRecord(ctx context.Context, class string, ref Ref, dst any) error {
	method := class + ".get_record"
	if err := checkRef(method, ref); err != nil {
		return err
	}
	raw, err := s.Call(ctx, method, string(ref))
	if err != nil {
		return err
	}
	return decodeRecord(method, raw, dst)
}

// getAllRecords calls class.get_all_records() and decodes each record.
func getAllRecords[T any](ctx context.Context, s *Session, class string) (map[Ref]T, error) {
	method := class + ".get_all_records"
	raw, err := s.Call(ctx, method)
	if err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := unmarshal(raw, &all); err != nil || all == nil {
		return nil, fmt.Errorf("xenapi: %s: the host returned %s where a map of records was expected", method, describe(raw))
	}
	out := make(map[Ref]T, len(all))
	for k, rec := range all {
		if !validRef(Ref(k)) {
			return nil, fmt.Errorf("xenapi: %s: the host returned a record under %.80q, which is not a reference", method, k)
		}
		var v T
		if err := decodeRecord(method, rec, &v); err != nil {
			return nil, fmt.Errorf("%w (record %s)", err, k)
		}
		out[Ref(k)] = v
	}
	return out, nil
}

// callRef calls a method that returns one reference.
func (s *Session) callRef(ctx context.Context, method string, params ...any) (Ref, error) {
	raw, err := s.Call(ctx, method, params...)
	if err != nil {
		return "", err
	}
	return refResult(method, raw)
}

// callRefs calls a method that returns a set of references.
func (s *Session) callRefs(ctx context.Context, method string, params ...any) ([]Ref, error) {
	raw, err := s.Call(ctx, method, params...)
	if err != nil {
		return nil, err
	}
	var refs []string
	if err := unmarshal(raw, &refs); err != nil {
		return nil, fmt.Errorf("xenapi: %s: the host returned %s where a set of references was expected", method, describe(raw))
	}
	out := make([]Ref, len(refs))
	for i, r := range refs {
		if !validRef(Ref(r)) {
			return nil, fmt.Errorf("xenapi: %s: item %d is not a reference", method, i)
		}
		out[i] = Ref(r)
	}
	return out, nil
}

// callVoid calls a method that returns nothing ("" in JSON-RPC).
func (s *Session) callVoid(ctx context.Context, method string, ref Ref, params ...any) error {
	if err := checkRef(method, ref); err != nil {
		return err
	}
	raw, err := s.Call(ctx, method, append([]any{string(ref)}, params...)...)
	if err != nil {
		return err
	}
	return checkVoid(method, raw)
}

func checkVoid(method string, raw json.RawMessage) error {
	var v any
	if err := unmarshal(raw, &v); err != nil {
		return fmt.Errorf("xenapi: %s: the host's result is not JSON: %w", method, err)
	}
	if v == nil || v == "" {
		return nil
	}
	return fmt.Errorf("xenapi: %s: the host returned %s where nothing was expected", method, describe(raw))
}

// asyncVoid runs "Async."+method on ref and expects an empty result.
func (s *Session) asyncVoid(ctx context.Context, method string, ref Ref) error {
	if err := checkRef(method, ref); err != nil {
		return err
	}
	_, err := s.Async(ctx, method, string(ref))
	return err
}

// GetAllVMs returns every VM record, templates, snapshots and dom0 included.
func (s *Session) GetAllVMs(ctx context.Context) (map[Ref]VM, error) {
	return getAllRecords[VM](ctx, s, "VM")
}

// GetVM returns a VM's record.
func (s *Session) GetVM(ctx context.Context, vm Ref) (VM, error) {
	var r VM
	err := s.getRecord(ctx, "VM", vm, &r)
	return r, err
}

// GetVMByUUID returns the VM with this UUID (UUID_INVALID when none).
func (s *Session) GetVMByUUID(ctx context.Context, uuid string) (Ref, error) {
	if !ValidUUID(uuid) {
		return "", fmt.Errorf("xenapi: %.60q is not a VM UUID (8-4-4-4-12 hex digits)", uuid)
	}
	return s.callRef(ctx, "VM.get_by_uuid", uuid)
}

// GetVMsByName returns the VMs (and templates, snapshots) with this name.
func (s *Session) GetVMsByName(ctx context.Context, name string) ([]Ref, error) {
	return s.callRefs(ctx, "VM.get_by_name_label", name)
}

// GetVBD returns a VBD's record.
func (s *Session) GetVBD(ctx context.Context, vbd Ref) (VBD, error) {
	var r VBD
	err := s.getRecord(ctx, "VBD", vbd, &r)
	return r, err
}

// GetAllVBDs returns every VBD record.
func (s *Session) GetAllVBDs(ctx context.Context) (map[Ref]VBD, error) {
	return getAllRecords[VBD](ctx, s, "VBD")
}

// GetVDI returns a VDI's record.
func (s *Session) GetVDI(ctx context.Context, vdi Ref) (VDI, error) {
	var r VDI
	err := s.getRecord(ctx, "VDI", vdi, &r)
	return r, err
}

// GetVDIByUUID returns the VDI with this UUID (UUID_INVALID when none).
func (s *Session) GetVDIByUUID(ctx context.Context, uuid string) (Ref, error) {
	if !ValidUUID(uuid) {
		return "", fmt.Errorf("xenapi: %.60q is not a VDI UUID (8-4-4-4-12 hex digits)", uuid)
	}
	return s.callRef(ctx, "VDI.get_by_uuid", uuid)
}

// GetAllVDIs returns every VDI record.
func (s *Session) GetAllVDIs(ctx context.Context) (map[Ref]VDI, error) {
	return getAllRecords[VDI](ctx, s, "VDI")
}

// GetSR returns an SR's record.
func (s *Session) GetSR(ctx context.Context, sr Ref) (SR, error) {
	var r SR
	err := s.getRecord(ctx, "SR", sr, &r)
	return r, err
}

// GetHost returns a host's record.
func (s *Session) GetHost(ctx context.Context, host Ref) (Host, error) {
	var r Host
	err := s.getRecord(ctx, "host", host, &r)
	return r, err
}

// GetPool returns the pool's reference and record.
func (s *Session) GetPool(ctx context.Context) (Ref, Pool, error) {
	refs, err := s.callRefs(ctx, "pool.get_all")
	if err != nil {
		return "", Pool{}, err
	}
	if len(refs) != 1 {
		return "", Pool{}, fmt.Errorf("xenapi: pool.get_all: the host knows %d pools, want exactly 1", len(refs))
	}
	var p Pool
	err = s.getRecord(ctx, "pool", refs[0], &p)
	return refs[0], p, err
}

// GetAllNetworks returns every network record.
func (s *Session) GetAllNetworks(ctx context.Context) (map[Ref]Network, error) {
	return getAllRecords[Network](ctx, s, "network")
}

// SnapshotVM snapshots a VM (Async.VM.snapshot) and returns the snapshot.
func (s *Session) SnapshotVM(ctx context.Context, vm Ref, name string) (Ref, error) {
	if err := checkRef("VM.snapshot", vm); err != nil {
		return "", err
	}
	res, err := s.Async(ctx, "VM.snapshot", string(vm), name)
	if err != nil {
		return "", err
	}
	if r := Ref(res); validRef(r) && r != NullRef {
		return r, nil
	}
	return "", fmt.Errorf("xenapi: VM.snapshot: the task's result is not a VM reference")
}

// DestroyVM destroys a VM record with its VBDs and VIFs; its VDIs stay
// (destroy a snapshot's disk VDIs with DestroyVDI, never a CD's ISO VDI).
func (s *Session) DestroyVM(ctx context.Context, vm Ref) error {
	return s.callVoid(ctx, "VM.destroy", vm)
}

// AddVMTag adds a tag to a VM (VM.add_tags).
func (s *Session) AddVMTag(ctx context.Context, vm Ref, tag string) error {
	return s.callVoid(ctx, "VM.add_tags", vm, tag)
}

// SetVMNameDescription sets a VM's description.
func (s *Session) SetVMNameDescription(ctx context.Context, vm Ref, d string) error {
	return s.callVoid(ctx, "VM.set_name_description", vm, d)
}

// AddVMOtherConfig adds key=value to a VM's other_config
// (VM.add_to_other_config; xapi refuses a key that exists: MAP_DUPLICATE_KEY).
func (s *Session) AddVMOtherConfig(ctx context.Context, vm Ref, key, value string) error {
	return s.callVoid(ctx, "VM.add_to_other_config", vm, key, value)
}

// DestroyVDI destroys a VDI (Async.VDI.destroy).
func (s *Session) DestroyVDI(ctx context.Context, vdi Ref) error {
	return s.asyncVoid(ctx, "VDI.destroy", vdi)
}

// EnableCBT turns on changed-block tracking for a VDI (idempotent).
func (s *Session) EnableCBT(ctx context.Context, vdi Ref) error {
	return s.callVoid(ctx, "VDI.enable_cbt", vdi)
}

// DisableCBT turns off changed-block tracking for a VDI (idempotent); it
// breaks the chain of changed-block bitmaps.
func (s *Session) DisableCBT(ctx context.Context, vdi Ref) error {
	return s.callVoid(ctx, "VDI.disable_cbt", vdi)
}

// CBTBlockSize is the disk span one bit of a changed-block bitmap covers.
const CBTBlockSize = 64 << 10

// BitmapLen is the length in bytes of the changed-block bitmap of a disk of
// size bytes: one bit per 64 KiB block, rounded up to whole bytes.
func BitmapLen(size int64) int64 {
	blocks := (size + CBTBlockSize - 1) / CBTBlockSize
	return (blocks + 7) / 8
}

// BlockChanged reports whether a changed-block bitmap marks block i (the
// 64 KiB at i*CBTBlockSize) as changed; bits are MSB-first. Blocks past the
// bitmap's end are reported unchanged.
func BlockChanged(bitmap []byte, i int64) bool {
	if i < 0 || i>>3 >= int64(len(bitmap)) {
		return false
	}
	return bitmap[i>>3]&(0x80>>(i&7)) != 0
}

// ListChangedBlocks returns the bitmap of the 64 KiB blocks that differ
// between two VDIs of one CBT chain (Async.VDI.list_changed_blocks): block i
// changed iff bitmap[i>>3] & (0x80 >> (i&7)) != 0. size is the disk's
// virtual size; a bitmap of another length is refused.
func (s *Session) ListChangedBlocks(ctx context.Context, from, to Ref, size int64) ([]byte, error) {
	for _, r := range []Ref{from, to} {
		if err := checkRef("VDI.list_changed_blocks", r); err != nil {
			return nil, err
		}
	}
	if size < 0 {
		return nil, fmt.Errorf("xenapi: VDI.list_changed_blocks: negative disk size %d", size)
	}
	res, err := s.Async(ctx, "VDI.list_changed_blocks", string(from), string(to))
	if err != nil {
		return nil, err
	}
	bitmap, err := base64.StdEncoding.DecodeString(res)
	if err != nil {
		return nil, fmt.Errorf("xenapi: VDI.list_changed_blocks: the bitmap is not base64: %w", err)
	}
	if want := BitmapLen(size); int64(len(bitmap)) != want {
		return nil, fmt.Errorf("xenapi: VDI.list_changed_blocks: the bitmap has %d bytes, but a disk of %d bytes needs %d: the VDI's size changed or the host answered for another disk; take a full backup",
			len(bitmap), size, want)
	}
	return bitmap, nil
}

// DataDestroy deletes a CBT-enabled snapshot's data, keeping its CBT
// metadata (Async.VDI.data_destroy): the VDI becomes type cbt_metadata and
// can still be the "from" of ListChangedBlocks.
func (s *Session) DataDestroy(ctx context.Context, vdi Ref) error {
	return s.asyncVoid(ctx, "VDI.data_destroy", vdi)
}

// GetNBDInfo returns the ways to reach a VDI over NBD; none when no
// network has purpose nbd or insecure_nbd.
func (s *Session) GetNBDInfo(ctx context.Context, vdi Ref) ([]NBDInfo, error) {
	const method = "VDI.get_nbd_info"
	if err := checkRef(method, vdi); err != nil {
		return nil, err
	}
	raw, err := s.Call(ctx, method, string(vdi))
	if err != nil {
		return nil, err
	}
	var items []json.RawMessage
	if err := unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("xenapi: %s: the host returned %s where a set was expected", method, describe(raw))
	}
	out := make([]NBDInfo, len(items))
	for i, it := range items {
		if err := decodeRecord(method, it, &out[i]); err != nil {
			return nil, err
		}
		if err := out[i].check(); err != nil {
			return nil, fmt.Errorf("xenapi: %s: item %d: %w", method, i, err)
		}
	}
	return out, nil
}

// UnplugVBD hot-unplugs a VBD (cleaning a leaked dom0 attachment).
func (s *Session) UnplugVBD(ctx context.Context, vbd Ref) error {
	return s.callVoid(ctx, "VBD.unplug", vbd)
}

// DestroyVBD destroys a VBD record.
func (s *Session) DestroyVBD(ctx context.Context, vbd Ref) error {
	return s.callVoid(ctx, "VBD.destroy", vbd)
}
