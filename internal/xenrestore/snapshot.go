package xenrestore

import (
	"context"
	"errors"
	"fmt"

	"github.com/cofferhq/coffer/internal/diskread"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/xenapi"
)

// SnapshotOptions say where RestoreSnapshot puts a VM.
type SnapshotOptions struct {
	Xen    *xenapi.Session
	SR     string // UUID or name-label
	Events func(string)
	// Read tunes the disk readers (cache, readahead).
	Read diskread.Options
}

// RestoreSnapshot recreates the VM a Coffer snapshot of kind "xen" holds:
// its metadata archive and every disk, read from the repository as they
// are uploaded (each chunk checked against its ID).
func RestoreSnapshot(ctx context.Context, r *repo.Repo, snap *manifest.Snapshot, opt SnapshotOptions) (Result, error) {
	if snap.Source.Kind != "xen" || snap.Source.Xen == nil {
		return Result{}, fmt.Errorf("snapshot %s is of %s, not of a XenServer VM: restore its disks to files instead", snap.Name, snap.Source.Kind)
	}
	if snap.Source.Xen.Metadata == "" {
		return Result{}, errors.New("the snapshot holds no VM metadata (export_metadata): restore its disks to files and create the VM by hand")
	}
	x := snap.Source.Xen
	id, ok := x.MetadataID()
	if !ok {
		return Result{}, fmt.Errorf("the snapshot's metadata ID %q: %w", x.Metadata, manifest.ErrFormat)
	}
	meta, err := r.LoadBlob(ctx, id)
	if err != nil {
		return Result{}, fmt.Errorf("the VM's metadata archive (chunk %s): %w", id, err)
	}
	if int64(len(meta)) != x.MetadataSize {
		return Result{}, fmt.Errorf("the VM's metadata archive (chunk %s) has %d bytes, the snapshot says %d: %w", id, len(meta), x.MetadataSize, manifest.ErrFormat)
	}
	var disks []Disk
	for i := range snap.Disks {
		d := &snap.Disks[i]
		if d.Xen == nil {
			return Result{}, fmt.Errorf("disk %d of the snapshot does not say which VDI it was", i)
		}
		dr, err := diskread.Open(ctx, r, d, opt.Read)
		if err != nil {
			return Result{}, fmt.Errorf("disk %s: %w", d.Xen.UserDevice, err)
		}
		defer dr.Close()
		ext, err := dr.DataExtents(ctx)
		if err != nil {
			return Result{}, fmt.Errorf("disk %s: %w", d.Xen.UserDevice, err)
		}
		data := make([]Extent, len(ext))
		for j, e := range ext {
			data[j] = Extent{Off: e.Off, Len: e.Len}
		}
		// The metadata is the XenServer snapshot's, whose disks are the
		// snapshot VDIs that were read.
		disks = append(disks, Disk{UserDevice: d.Xen.UserDevice, VDI: d.Xen.SnapshotVDI, Size: d.Size, Reader: dr,
			Data: data, NameLabel: d.Xen.Label})
	}
	return Restore(ctx, Options{Xen: opt.Xen, SR: opt.SR, Metadata: meta, Disks: disks, Events: opt.Events})
}
