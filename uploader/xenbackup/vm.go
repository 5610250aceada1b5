package xenbackup

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/xenapi"
)

// Marks of Coffer's own snapshots in the pool: a name that starts with
// snapshotPrefix and the repository's ID, given when the snapshot is taken
// (so even a run killed right after it finds it), and an other_config key.
const (
	snapshotPrefix = "coffer-"
	otherConfigKey = "coffer-repository"
	metadataLimit  = 64 << 20
)

// snapshotName names the XenServer snapshot of a VM.
func (n *night) snapshotName(vm xenapi.VM) string {
	return n.namePrefix() + " " + vm.NameLabel
}

func (n *night) namePrefix() string {
	id := n.opt.Repo.Config().ID
	return snapshotPrefix + id[:min(len(id), 12)]
}

// vmDisk is one disk VBD of a VM with its VDI.
type vmDisk struct {
	vbd    xenapi.VBD
	vdiRef xenapi.Ref
	vdi    xenapi.VDI
}

// diskVDIs returns a VM's disk VBDs with their VDIs, in userdevice order.
// CD drives (and empty drives) are never backed up.
func (n *night) diskVDIs(ctx context.Context, vm xenapi.VM) ([]vmDisk, error) {
	var out []vmDisk
	for _, ref := range vm.VBDs {
		vbd, err := n.opt.Xen.GetVBD(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("reading a VBD of VM %s: %w", vm.NameLabel, err)
		}
		if vbd.Type != "Disk" || vbd.Empty || vbd.VDI.IsNull() {
			continue
		}
		vdi, err := n.opt.Xen.GetVDI(ctx, vbd.VDI)
		if err != nil {
			return nil, fmt.Errorf("reading the VDI of disk %s of VM %s: %w", vbd.Userdevice, vm.NameLabel, err)
		}
		if !manifest.ValidUUID(vdi.UUID) {
			return nil, fmt.Errorf("the VDI of disk %s of VM %s has the UUID %q, which is not one", vbd.Userdevice, vm.NameLabel, vdi.UUID)
		}
		out = append(out, vmDisk{vbd: vbd, vdiRef: vbd.VDI, vdi: vdi})
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.Atoi(out[i].vbd.Userdevice)
		b, _ := strconv.Atoi(out[j].vbd.Userdevice)
		return a < b
	})
	return out, nil
}

// backupVM is one VM's night: snapshot, metadata, disks, commit, and the
// pool left with only what the next night needs.
func (n *night) backupVM(ctx context.Context, t vmTarget) (res VMResult) {
	start := clock.Start()
	res = VMResult{Name: t.vm.NameLabel, UUID: t.vm.UUID}
	defer func() { res.Duration = start.Elapsed() }()
	fail := func(err error) VMResult {
		res.Err = err
		n.event(res.Name, "failed: %v", err)
		return res
	}
	live, err := n.diskVDIs(ctx, t.vm)
	if err != nil {
		return fail(err)
	}
	if len(live) == 0 {
		return fail(fmt.Errorf("VM %s has no disk to back up", t.vm.NameLabel))
	}
	noCBT := n.enableCBT(ctx, t.vm, live)
	n.event(res.Name, "snapshotting")
	snapRef, err := n.opt.Xen.SnapshotVM(ctx, t.ref, n.snapshotName(t.vm))
	if err != nil {
		return fail(fmt.Errorf("XenServer could not snapshot VM %s: %w", t.vm.NameLabel, err))
	}
	committed := false
	defer func() {
		if !committed {
			// Not a backup: nothing of it may stay in the pool.
			n.removeSnapshot(context.WithoutCancel(ctx), snapRef, &res)
		}
	}()
	if err := n.opt.Xen.AddVMOtherConfig(ctx, snapRef, otherConfigKey, n.opt.Repo.Config().ID); err != nil {
		res.Warnings = append(res.Warnings, "marking the snapshot: "+err.Error())
	}
	snap, err := n.snapshotOf(ctx, snapRef, live)
	if err != nil {
		return fail(err)
	}
	rec, err := n.backupDisks(ctx, t.vm, snap, noCBT, &res)
	if err != nil {
		return fail(err)
	}
	if rec.Source.Xen.Metadata, rec.Source.Xen.MetadataSize, err = n.saveMetadata(ctx, snap.vm); err != nil {
		return fail(err)
	}
	id, err := n.session.Commit(ctx, rec)
	if err != nil {
		return fail(fmt.Errorf("saving the snapshot of VM %s: %w", t.vm.NameLabel, err))
	}
	committed = true
	res.SnapshotID, res.SnapshotName, res.Time = id, rec.Name, rec.Time
	n.event(res.Name, "snapshot %s saved", id[:min(len(id), 8)])
	n.afterCommit(context.WithoutCancel(ctx), snapRef, rec, &res)
	return res
}

// vmSnapshot is the XenServer snapshot of a VM with its disks, matched to
// the VM's disks by position.
type vmSnapshot struct {
	ref   xenapi.Ref
	vm    xenapi.VM
	disks []snapDisk
}

type snapDisk struct {
	live vmDisk
	snap vmDisk
}

func (n *night) snapshotOf(ctx context.Context, ref xenapi.Ref, live []vmDisk) (*vmSnapshot, error) {
	vm, err := n.opt.Xen.GetVM(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("reading the new snapshot: %w", err)
	}
	if !manifest.ValidUUID(vm.UUID) {
		return nil, fmt.Errorf("the new snapshot has the UUID %q, which is not one", vm.UUID)
	}
	disks, err := n.diskVDIs(ctx, vm)
	if err != nil {
		return nil, err
	}
	byDev := map[string]vmDisk{}
	for _, d := range disks {
		byDev[d.vbd.Userdevice] = d
	}
	s := &vmSnapshot{ref: ref, vm: vm}
	for _, l := range live {
		d, ok := byDev[l.vbd.Userdevice]
		if !ok {
			return nil, fmt.Errorf("the snapshot has no disk at position %s, which the VM has: it changed while it was snapshotted; the next run tries again", l.vbd.Userdevice)
		}
		s.disks = append(s.disks, snapDisk{live: l, snap: d})
	}
	return s, nil
}

// enableCBT turns changed block tracking on for the VM's disks and returns,
// for each disk (by userdevice) where it cannot be, the reason.
func (n *night) enableCBT(ctx context.Context, vm xenapi.VM, disks []vmDisk) map[string]string {
	reasons := map[string]string{}
	for _, d := range disks {
		if d.vdi.CBTEnabled {
			continue
		}
		err := n.opt.Xen.EnableCBT(ctx, d.vdiRef)
		switch {
		case err == nil:
			continue
		case xenapi.IsCode(err, xenapi.ErrLicenceRestriction):
			reasons[d.vbd.Userdevice] = "the pool's licence does not allow changed block tracking"
		case xenapi.IsCode(err, xenapi.ErrMethodUnknown):
			reasons[d.vbd.Userdevice] = "this XenServer version has no changed block tracking"
		default:
			reasons[d.vbd.Userdevice] = "changed block tracking could not be turned on: " + err.Error()
		}
		n.event(vm.NameLabel, "disk %s: %s; every night reads the whole disk", d.vbd.Userdevice, reasons[d.vbd.Userdevice])
	}
	return reasons
}

// saveMetadata stores the snapshot's export_metadata archive.
func (n *night) saveMetadata(ctx context.Context, vm xenapi.VM) (string, int64, error) {
	tar, err := n.opt.Xen.ExportMetadata(ctx, vm.UUID, metadataLimit)
	if err != nil {
		return "", 0, fmt.Errorf("exporting the metadata of VM %s: %w", vm.NameLabel, err)
	}
	id, err := n.session.PutMeta(ctx, tar)
	if err != nil {
		return "", 0, fmt.Errorf("storing the metadata of VM %s: %w", vm.NameLabel, err)
	}
	return hex.EncodeToString(id[:]), int64(len(tar)), nil
}

// snapshotRecord is the Coffer snapshot of a VM before its disks.
func (n *night) snapshotRecord(vm xenapi.VM, snap *vmSnapshot) *manifest.Snapshot {
	host, _ := os.Hostname()
	name := vm.NameLabel
	if manifest.ValidName(name) != nil {
		name = vm.UUID
	}
	return &manifest.Snapshot{
		Version: manifest.SnapshotVersion,
		Time:    n.clock.Now().UTC(),
		Host:    host,
		Name:    name,
		Tags:    append([]string{"xen"}, n.opt.Tags...),
		Source: manifest.Source{Kind: "xen", Path: "xen:" + vm.NameLabel, Xen: &manifest.XenVM{
			Pool: n.poolUUID, VM: vm.UUID, Name: vm.NameLabel, Snapshot: snap.vm.UUID,
		}},
	}
}

var errNoNBD = errors.New("NBD is not enabled on any network of the pool")
