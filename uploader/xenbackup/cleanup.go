package xenbackup

import (
	"context"
	"fmt"
	"strings"

	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/xenapi"
)

// CleanupReport says what a run removed that earlier runs left in the pool.
type CleanupReport struct {
	// OrphanSnapshots are Coffer's XenServer snapshots no Coffer snapshot
	// names (a run died before it committed), removed with their disks.
	OrphanSnapshots int
	// FinishedSnapshots are snapshots of committed backups a run died
	// before it could reduce to what the next night needs.
	FinishedSnapshots int
	// Detached counts disks left attached to the control domain (a killed
	// NBD reader) that were detached.
	Detached int
	// StaleBases counts changed-block logs of older nights removed.
	StaleBases int
	Warnings   []string
}

// isOurs reports whether a VM is a XenServer snapshot this repository's
// runs took.
func (n *night) isOurs(vm xenapi.VM) bool {
	if !vm.IsASnapshot {
		return false
	}
	return vm.OtherConfig[otherConfigKey] == n.opt.Repo.Config().ID || strings.HasPrefix(vm.NameLabel, n.namePrefix()+" ")
}

// cleanup removes what crashed runs left: it detaches our disks from the
// control domain, removes our snapshots no Coffer snapshot names, finishes
// the reduction of those that are named, and removes changed-block logs no
// newest Coffer snapshot needs any more.
func (n *night) cleanup(ctx context.Context) CleanupReport {
	var rep CleanupReport
	named := map[string]bool{} // snapshot VM UUIDs the newest Coffer snapshots name
	for _, s := range n.latest {
		named[s.snap.Source.Xen.Snapshot] = true
	}
	for ref, vm := range n.vms {
		if !n.isOurs(vm) {
			continue
		}
		if named[vm.UUID] {
			rep.FinishedSnapshots++
			if err := n.opt.Xen.DestroyVM(ctx, ref); err != nil && !gone(err) {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("removing the snapshot %s: %v", vm.NameLabel, err))
			}
			continue
		}
		rep.OrphanSnapshots++
		var res VMResult
		n.removeSnapshot(ctx, ref, &res)
		rep.Warnings = append(rep.Warnings, res.Warnings...)
	}
	// A committed night's disks as its plan says, whatever killed it.
	for _, s := range n.latest {
		for _, d := range s.snap.Disks {
			if d.Xen != nil {
				n.reduce(ctx, d.Xen, &rep.Warnings, &rep.Detached)
			}
		}
	}
	n.removeStaleBases(ctx, &rep)
	if len(rep.Warnings) > 0 || rep.OrphanSnapshots > 0 || rep.Detached > 0 {
		n.event("", "cleaned up after an earlier run: %d orphan snapshots removed, %d disks detached", rep.OrphanSnapshots, rep.Detached)
	}
	return rep
}

// removeStaleBases removes the bases of older nights that a run killed
// after its commit left in the pool: only the newest Coffer snapshot of a
// VM needs its base.
func (n *night) removeStaleBases(ctx context.Context, rep *CleanupReport) {
	if len(n.older) == 0 {
		return
	}
	vdis, err := n.opt.Xen.GetAllVDIs(ctx)
	if err != nil {
		rep.Warnings = append(rep.Warnings, "listing the pool's VDIs to remove older bases: "+err.Error())
		return
	}
	for ref, vdi := range vdis {
		if !n.older[vdi.UUID] || n.kept[vdi.UUID] || !vdi.IsASnapshot {
			continue
		}
		err := n.retryDetached(ctx, ref, &rep.Detached, func() error { return n.opt.Xen.DestroyVDI(ctx, ref) })
		if err != nil && !gone(err) {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("removing an older night's base %s: %v", vdi.UUID, err))
			continue
		}
		rep.StaleBases++
	}
}

// reduce leaves of a committed night's snapshot VDI what its plan keeps.
func (n *night) reduce(ctx context.Context, x *manifest.XenDisk, warnings *[]string, detached *int) {
	ref, err := n.opt.Xen.GetVDIByUUID(ctx, x.SnapshotVDI)
	if err != nil {
		return // gone already
	}
	vdi, err := n.opt.Xen.GetVDI(ctx, ref)
	if err != nil {
		return
	}
	switch {
	case x.Kept == manifest.XenKeptMeta && vdi.Type != "cbt_metadata":
		err = n.retryDetached(ctx, ref, detached, func() error { return n.opt.Xen.DataDestroy(ctx, ref) })
	case x.Kept == manifest.XenKeptNone:
		err = n.retryDetached(ctx, ref, detached, func() error { return n.opt.Xen.DestroyVDI(ctx, ref) })
	}
	if err != nil && !gone(err) {
		*warnings = append(*warnings, fmt.Sprintf("reducing snapshot VDI %s to what the next night needs: %v", x.SnapshotVDI, err))
	}
}

// removeSnapshot removes a snapshot that is not a backup: its disk VDIs
// first (never a CD's ISO), then the snapshot VM, so a run killed between
// the two finds the VM again.
func (n *night) removeSnapshot(ctx context.Context, ref xenapi.Ref, res *VMResult) {
	vm, err := n.opt.Xen.GetVM(ctx, ref)
	if err != nil {
		if !gone(err) {
			res.Warnings = append(res.Warnings, "reading the snapshot to remove it: "+err.Error())
		}
		return
	}
	disks, err := n.diskVDIs(ctx, vm)
	if err != nil {
		res.Warnings = append(res.Warnings, "removing the snapshot: "+err.Error())
		return
	}
	var detached int
	for _, d := range disks {
		if !d.vdi.IsASnapshot {
			continue // never a VDI the snapshot shares with a live VM
		}
		err := n.retryDetached(ctx, d.vdiRef, &detached, func() error { return n.opt.Xen.DestroyVDI(ctx, d.vdiRef) })
		if err != nil && !gone(err) {
			res.Warnings = append(res.Warnings, fmt.Sprintf("removing disk %s of the snapshot %s: %v", d.vbd.Userdevice, vm.NameLabel, err))
		}
	}
	if err := n.opt.Xen.DestroyVM(ctx, ref); err != nil && !gone(err) {
		res.Warnings = append(res.Warnings, fmt.Sprintf("removing the snapshot %s: %v", vm.NameLabel, err))
	}
}

// afterCommit leaves in the pool only what the next night needs: the
// snapshot VM goes, each snapshot VDI is reduced as planned, and the bases
// of the previous night go when they are not needed any more.
func (n *night) afterCommit(ctx context.Context, snapRef xenapi.Ref, rec *manifest.Snapshot, res *VMResult) {
	if err := n.opt.Xen.DestroyVM(ctx, snapRef); err != nil && !gone(err) {
		res.Warnings = append(res.Warnings, "removing the snapshot VM: "+err.Error())
	}
	var detached int
	now := map[string]bool{}
	for _, d := range rec.Disks {
		n.reduce(ctx, d.Xen, &res.Warnings, &detached)
		now[d.Xen.SnapshotVDI] = true
	}
	prev := n.latest[rec.Source.Xen.VM] // read only during the night
	if prev == nil {
		return
	}
	for _, d := range prev.snap.Disks {
		if d.Xen == nil || d.Xen.Kept == manifest.XenKeptNone || now[d.Xen.SnapshotVDI] {
			continue
		}
		ref, err := n.opt.Xen.GetVDIByUUID(ctx, d.Xen.SnapshotVDI)
		if err != nil {
			continue // gone already
		}
		err = n.retryDetached(ctx, ref, &detached, func() error { return n.opt.Xen.DestroyVDI(ctx, ref) })
		if err != nil && !gone(err) {
			res.Warnings = append(res.Warnings, fmt.Sprintf("removing the previous night's base %s: %v", d.Xen.SnapshotVDI, err))
		}
	}
}

// retryDetached runs op; when XenServer says the VDI is in use, it
// detaches the VDI from the control domain (a killed NBD reader leaves it
// attached) and runs op once more.
func (n *night) retryDetached(ctx context.Context, vdi xenapi.Ref, detached *int, op func() error) error {
	err := op()
	if !xenapi.IsCode(err, xenapi.ErrVDIInUse) || n.dom0 == "" {
		return err
	}
	vbds, lerr := n.opt.Xen.GetAllVBDs(ctx)
	if lerr != nil {
		return err
	}
	for ref, vbd := range vbds {
		if vbd.VM != n.dom0 || vbd.VDI != vdi {
			continue
		}
		if vbd.CurrentlyAttached {
			if uerr := n.opt.Xen.UnplugVBD(ctx, ref); uerr != nil && !gone(uerr) {
				return fmt.Errorf("%w (detaching it from the control domain: %v)", err, uerr)
			}
		}
		if derr := n.opt.Xen.DestroyVBD(ctx, ref); derr != nil && !gone(derr) {
			return fmt.Errorf("%w (detaching it from the control domain: %v)", err, derr)
		}
		*detached++
	}
	return op()
}

// gone reports whether err says the object does not exist.
func gone(err error) bool {
	return xenapi.IsCode(err, xenapi.ErrHandleInvalid) || xenapi.IsCode(err, xenapi.ErrUUIDInvalid)
}
