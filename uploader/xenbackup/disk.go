package xenbackup

import (
	"context"
	"fmt"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/nbd"
	"github.com/cofferhq/coffer/internal/xenapi"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
)

// backupDisks backs every disk of the snapshot up, one after another, and
// returns the Coffer snapshot record naming them.
func (n *night) backupDisks(ctx context.Context, vm xenapi.VM, snap *vmSnapshot, noCBT map[string]string, res *VMResult) (*manifest.Snapshot, error) {
	rec := n.snapshotRecord(vm, snap)
	for i, d := range snap.disks {
		disk, dr, err := n.backupDisk(ctx, vm, i, d, noCBT[d.live.vbd.Userdevice])
		if err != nil {
			return nil, err
		}
		res.Disks = append(res.Disks, dr)
		rec.Disks = append(rec.Disks, disk)
		if dr.Read == manifest.XenReadChanged {
			rec.Parent = n.latest[vm.UUID].id
		}
	}
	return rec, nil
}

// backupDisk backs one disk up: its changed blocks when it can, the whole
// disk otherwise.
func (n *night) backupDisk(ctx context.Context, vm xenapi.VM, i int, d snapDisk, noCBT string) (manifest.Disk, DiskResult, error) {
	size := d.snap.vdi.VirtualSize
	dev := d.live.vbd.Userdevice
	ch, base, reason := n.plan(ctx, vm, d, size, noCBT)
	dr := DiskResult{UserDevice: dev, VDI: d.live.vdi.UUID, Size: size, Read: manifest.XenReadFull, Reason: reason}
	if ch != nil {
		dr.Read, dr.ChangedBlocks = manifest.XenReadChanged, ch.Count(size)
		n.event(vm.NameLabel, "disk %s: %d changed blocks of %d", dev, dr.ChangedBlocks, (size+manifest.BlockSize-1)/manifest.BlockSize)
	} else {
		n.event(vm.NameLabel, "disk %s: reading the whole disk: %s", dev, reason)
	}
	src, err := n.openNBD(ctx, vm, d, size)
	if err != nil {
		return manifest.Disk{}, dr, err
	}
	src.SetReadAhead(ch == nil)
	var c uploader.DiskCounters
	start := clock.Start()
	disk, err := n.session.BackupDisk(ctx, uploader.DiskJob{Source: src, Index: i, Name: "xvd" + deviceLetter(dev), Counters: &c, Changes: ch, Chunking: manifest.ChunkingBlocks})
	dr.Reconnects = src.Stats().Reconnects
	// Disconnecting detaches the VDI from the control domain, which the
	// snapshot's removal needs.
	src.Close()
	if err != nil {
		return manifest.Disk{}, dr, fmt.Errorf("disk %s of VM %s: %w", dev, vm.NameLabel, err)
	}
	dr.ReadBytes, dr.Fetched, dr.NewBytes = c.Read.Load(), c.Fetched.Load(), c.NewBytes.Load()
	n.event(vm.NameLabel, "disk %s: read %.1f MiB, %.1f MiB new, in %.1fs", dev, mib(dr.ReadBytes), mib(dr.NewBytes), start.Elapsed().Seconds())
	kept := manifest.XenKeptNone
	switch {
	case !d.snap.vdi.CBTEnabled:
	case ch != nil:
		kept = manifest.XenKeptMeta
	default:
		// Only a night that really read changed blocks purges a snapshot's
		// data: after a full read, the whole snapshot is the next base.
		kept = manifest.XenKeptData
	}
	disk.Xen = &manifest.XenDisk{
		VDI: d.live.vdi.UUID, SnapshotVDI: d.snap.vdi.UUID, UserDevice: dev, Label: d.live.vdi.NameLabel,
		Read: dr.Read, Reason: reason, BaseVDI: base, ChangedBlocks: dr.ChangedBlocks, Kept: kept,
	}
	return disk, dr, nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// deviceLetter turns userdevice "0" into "a", "1" into "b", ...
func deviceLetter(dev string) string {
	if len(dev) == 1 && dev[0] >= '0' && dev[0] <= '9' {
		return string(rune('a' + dev[0] - '0'))
	}
	return dev
}

// plan decides how a disk is read: the changes since the last Coffer
// snapshot of this VDI when XenServer can list them, or nil and why not.
func (n *night) plan(ctx context.Context, vm xenapi.VM, d snapDisk, size int64, noCBT string) (*uploader.Changes, string, string) {
	if noCBT != "" {
		return nil, "", noCBT
	}
	if n.opt.FullRead {
		return nil, "", "a full read was asked for (--full-read)"
	}
	if !d.snap.vdi.CBTEnabled {
		return nil, "", "changed block tracking is off on the snapshot of the disk"
	}
	prev := n.latest[vm.UUID]
	if prev == nil {
		return nil, "", "first backup of this VM in the repository"
	}
	if why := n.opt.UnusableParents[prev.id]; why != "" {
		return nil, "", why
	}
	var base *manifest.Disk
	for i := range prev.snap.Disks {
		pd := &prev.snap.Disks[i]
		if pd.Xen != nil && pd.Xen.UserDevice == d.live.vbd.Userdevice {
			base = pd
		}
	}
	switch {
	case base == nil:
		return nil, "", "the last backup of this VM had no disk at this position"
	case base.Xen.VDI != d.live.vdi.UUID:
		return nil, "", "the disk's VDI is not the one backed up last time (a storage migration gives VDIs new UUIDs)"
	case base.Xen.Kept == manifest.XenKeptNone:
		return nil, "", "the last backup kept no changed-block log"
	case base.Size != size:
		return nil, "", fmt.Sprintf("the disk was resized from %d to %d bytes", base.Size, size)
	}
	baseRef, err := n.opt.Xen.GetVDIByUUID(ctx, base.Xen.SnapshotVDI)
	if err != nil {
		return nil, "", "the last backup's changed-block log (VDI " + base.Xen.SnapshotVDI + ") is gone from the pool"
	}
	bitmap, err := n.opt.Xen.ListChangedBlocks(ctx, baseRef, d.snap.vdiRef, size)
	if err != nil {
		return nil, "", "XenServer could not list the changed blocks: " + err.Error()
	}
	ch := &uploader.Changes{Base: base, Bitmap: bitmap}
	if err := ch.Check(size, manifest.ChunkingBlocks); err != nil {
		return nil, "", err.Error()
	}
	return ch, base.Xen.SnapshotVDI, ""
}

// openNBD connects to the snapshot VDI over NBD.
func (n *night) openNBD(ctx context.Context, vm xenapi.VM, d snapDisk, size int64) (*source.NBDSource, error) {
	infos, err := n.opt.Xen.GetNBDInfo(ctx, d.snap.vdiRef)
	if xenapi.IsCode(err, xenapi.ErrMethodUnknown) {
		return nil, fmt.Errorf("disk %s of VM %s: this XenServer version cannot serve disks over NBD (XenServer 7.3 or later is needed)", d.live.vbd.Userdevice, vm.NameLabel)
	}
	if err != nil {
		return nil, fmt.Errorf("disk %s of VM %s: asking where to read it over NBD: %w", d.live.vbd.Userdevice, vm.NameLabel, err)
	}
	if len(infos) == 0 {
		return nil, fmt.Errorf("disk %s of VM %s: %w: give a network of the pool the purpose nbd (xe network-param-add uuid=<network> param-name=purpose param-key=nbd)", d.live.vbd.Userdevice, vm.NameLabel, errNoNBD)
	}
	info := infos[0]
	exp := nbd.Export{Address: info.Address, Port: int(info.Port), CertPEM: info.Cert, Subject: info.Subject, Name: info.ExportName}
	dialOpt := n.opt.NBD.Dial
	dialOpt.AllowPlain = n.opt.NBD.AllowPlain
	dial := func(ctx context.Context) (*nbd.Conn, error) { return nbd.Dial(ctx, exp, dialOpt) }
	conns := n.opt.NBD.ConnsPerDisk
	if conns <= 0 {
		conns = 4
	}
	path := fmt.Sprintf("VM %s disk %s", vm.NameLabel, d.live.vbd.Userdevice)
	return source.OpenNBD(ctx, path, size, dial, nbd.ReaderOptions{MaxConns: conns, Host: n.hostNBD})
}
