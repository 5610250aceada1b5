package xenrestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/internal/xenapi"
)

// Extent is a byte range of a disk that holds data.
type Extent = xenapi.Extent

// Disk is one disk of the VM to restore.
type Disk struct {
	// UserDevice is the VBD's position ("0", "1", ...), for messages.
	UserDevice string
	// VDI is the UUID of the VDI the disk was read from
	// (manifest.XenDisk.VDI): the metadata archive names it.
	VDI string
	// Size is the disk's virtual size (a multiple of 512).
	Size int64
	// Reader reads the disk; only the Data extents are read.
	Reader io.ReaderAt
	// Data lists the extents that hold data, sorted, not overlapping;
	// the rest of the disk is zeros.
	Data []Extent
	// NameLabel names the new VDI ("restored disk N" when empty).
	NameLabel string
}

// Options says what to restore where.
type Options struct {
	Xen *xenapi.Session
	// SR is the SR's UUID or name-label.
	SR string
	// Metadata is the VM's export_metadata archive (a tar with ova.xml).
	Metadata []byte
	Disks    []Disk
	// Events gets one line per step; nil for none.
	Events func(string)
}

// Result is the restored VM.
type Result struct {
	VMUUID string     `json:"vm_uuid"`
	VMRef  xenapi.Ref `json:"vm_ref"`
	// VDIs are the new VDIs' UUIDs, in the order of Options.Disks.
	VDIs []string `json:"vdis"`
}

// cleanupTimeout bounds the removal of what a failed restore created; it
// runs even when the caller's context has ended.
const cleanupTimeout = 2 * time.Minute

// Restore recreates the VM in the pool: it checks the SR and its free
// space, creates and uploads a VDI per disk, then imports the metadata
// with the original VDIs mapped to the new ones. On failure everything it
// created is removed (see the package doc).
func Restore(ctx context.Context, opts Options) (Result, error) {
	if err := opts.check(); err != nil {
		return Result{}, err
	}
	r := &run{opts: opts, xen: opts.Xen}
	res, err := r.restore(ctx)
	if err != nil {
		if cerr := r.undo(); cerr != nil {
			err = fmt.Errorf("%w; cleaning up: %w", err, cerr)
		}
		return Result{}, err
	}
	return res, nil
}

// check validates the options before anything touches the pool.
func (o Options) check() error {
	switch {
	case o.Xen == nil:
		return errors.New("xenrestore: no XenAPI session")
	case o.SR == "":
		return errors.New("xenrestore: no SR named: give the target SR's UUID or name-label")
	case len(o.Metadata) == 0:
		return errors.New("xenrestore: the VM's metadata archive is empty: the snapshot recorded none, so the VM cannot be recreated")
	case len(o.Disks) == 0:
		return errors.New("xenrestore: no disks to restore")
	}
	devices, vdis := map[string]bool{}, map[string]bool{}
	for i, d := range o.Disks {
		name := "disk " + d.UserDevice
		if n, err := strconv.Atoi(d.UserDevice); err != nil || n < 0 || devices[d.UserDevice] {
			return fmt.Errorf("xenrestore: disk %d: userdevice %.20q is not a device number, or repeats", i, d.UserDevice)
		}
		switch {
		case !xenapi.ValidUUID(d.VDI) || vdis[d.VDI]:
			return fmt.Errorf("xenrestore: %s: the original VDI %.60q is not a UUID, or repeats", name, d.VDI)
		case d.Reader == nil:
			return fmt.Errorf("xenrestore: %s: no reader", name)
		case d.Size%512 != 0:
			return fmt.Errorf("xenrestore: %s: the size %d is not a multiple of 512", name, d.Size)
		}
		if err := xenapi.CheckExtents(d.Data, d.Size); err != nil {
			return fmt.Errorf("xenrestore: %s: %w", name, err)
		}
		devices[d.UserDevice], vdis[d.VDI] = true, true
	}
	return o.checkMetadata(vdis)
}

// checkMetadata checks that the metadata's disk VBDs and the disks match
// one to one: an unmapped disk VBD would attach the new VM to the
// original VM's VDI when it is still in the pool.
func (o Options) checkMetadata(disks map[string]bool) error {
	vbds, err := xenapi.MetadataVBDs(o.Metadata)
	if err != nil {
		return fmt.Errorf("xenrestore: the VM's metadata archive: %w", err)
	}
	named := map[string]bool{}
	for _, b := range vbds {
		if b.Type != xenapi.VBDTypeDisk || b.VDI == "" {
			continue
		}
		if !disks[b.VDI] {
			return fmt.Errorf("xenrestore: the metadata's disk %s (VDI %s) is not among the disks to restore: restore every disk of the VM", b.Userdevice, b.VDI)
		}
		named[b.VDI] = true
	}
	for _, d := range o.Disks {
		if !named[d.VDI] {
			return fmt.Errorf("xenrestore: disk %s (VDI %s) is not a disk of the VM the metadata describes: the metadata and the disks come from different backups", d.UserDevice, d.VDI)
		}
	}
	return nil
}

// run is one restore: what it created, for undo.
type run struct {
	opts Options
	xen  *xenapi.Session
	vdis []xenapi.Ref // created, in order
	vms  []xenapi.Ref // created by import_metadata
}

func (r *run) event(format string, args ...any) {
	if r.opts.Events != nil {
		r.opts.Events(fmt.Sprintf(format, args...))
	}
}

func (r *run) restore(ctx context.Context) (Result, error) {
	sr, err := r.pickSR(ctx)
	if err != nil {
		return Result{}, err
	}
	vdiMap := map[string]string{}
	var res Result
	for i, d := range r.opts.Disks {
		uuid, err := r.restoreDisk(ctx, sr, i, d)
		if err != nil {
			return Result{}, err
		}
		vdiMap[d.VDI] = uuid
		res.VDIs = append(res.VDIs, uuid)
	}
	vms, err := r.xen.ImportMetadata(ctx, r.opts.Metadata, vdiMap, xenapi.MetadataImportOptions{})
	r.vms = vms
	if err != nil {
		return Result{}, fmt.Errorf("xenrestore: recreating the VM from its metadata: %w", err)
	}
	if len(vms) != 1 {
		return Result{}, fmt.Errorf("xenrestore: the metadata import made %d VMs, want 1: the archive is not one VM's", len(vms))
	}
	vm, err := r.checkVM(ctx, vms[0], res.VDIs)
	if err != nil {
		return Result{}, err
	}
	res.VMUUID, res.VMRef = vm.UUID, vms[0]
	r.event("vm %s (%q) created, halted", vm.UUID, vm.NameLabel)
	return res, nil
}

// checkVM checks the new VM: halted, and every new VDI attached to it as
// a disk (xapi leaves out, without an error, a disk whose VDI it cannot
// find).
func (r *run) checkVM(ctx context.Context, ref xenapi.Ref, vdis []string) (xenapi.VM, error) {
	vm, err := r.xen.GetVM(ctx, ref)
	if err != nil {
		return vm, err
	}
	if vm.PowerState != xenapi.PowerStateHalted {
		return vm, fmt.Errorf("xenrestore: the new VM %s is %s, not halted", vm.UUID, vm.PowerState)
	}
	attached := map[string]bool{}
	for _, b := range vm.VBDs {
		vbd, err := r.xen.GetVBD(ctx, b)
		if err != nil {
			return vm, err
		}
		if vbd.Type != xenapi.VBDTypeDisk || vbd.VDI.IsNull() {
			continue
		}
		vdi, err := r.xen.GetVDI(ctx, vbd.VDI)
		if err != nil {
			return vm, err
		}
		attached[vdi.UUID] = true
	}
	for i, u := range vdis {
		if !attached[u] {
			return vm, fmt.Errorf("xenrestore: the new VM %s lacks disk %s (VDI %s): the pool's import left it out", vm.UUID, r.opts.Disks[i].UserDevice, u)
		}
	}
	return vm, nil
}

// pickSR finds the SR by UUID or name-label and checks it has room for
// every disk's virtual size.
func (r *run) pickSR(ctx context.Context) (xenapi.Ref, error) {
	all, err := r.xen.GetAllSRs(ctx)
	if err != nil {
		return "", err
	}
	var found []xenapi.Ref
	for ref, sr := range all {
		if sr.UUID == r.opts.SR || sr.NameLabel == r.opts.SR {
			found = append(found, ref)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("xenrestore: the pool has no SR with UUID or name-label %q: list them with xe sr-list", r.opts.SR)
	case 1:
	default:
		return "", fmt.Errorf("xenrestore: %d SRs are named %q: name the target by its UUID", len(found), r.opts.SR)
	}
	sr := all[found[0]]
	if sr.ContentType == "iso" {
		return "", fmt.Errorf("xenrestore: SR %q (%s) is an ISO library: choose a disk SR", sr.NameLabel, sr.UUID)
	}
	var need int64
	for _, d := range r.opts.Disks {
		need += d.Size
	}
	free := sr.PhysicalSize - sr.PhysicalUtilisation
	if need > free {
		return "", fmt.Errorf("xenrestore: SR %q (%s) has %d bytes free, the VM's disks need %d: free space on it or choose another SR", sr.NameLabel, sr.UUID, max(free, 0), need)
	}
	r.event("sr %s (%q): %d bytes free, %d needed", sr.UUID, sr.NameLabel, free, need)
	return found[0], nil
}

// restoreDisk creates disk i's VDI and uploads its data; it returns the
// VDI's UUID.
func (r *run) restoreDisk(ctx context.Context, sr xenapi.Ref, i int, d Disk) (string, error) {
	name := d.NameLabel
	if name == "" {
		name = "restored disk " + d.UserDevice
	}
	vdi, err := r.xen.CreateVDI(ctx, xenapi.VDISpec{NameLabel: name, NameDescription: "Restored by Coffer from VDI " + d.VDI,
		SR: sr, VirtualSize: d.Size, Type: xenapi.VDITypeUser})
	if err != nil {
		return "", fmt.Errorf("xenrestore: disk %s: creating its VDI: %w", d.UserDevice, err)
	}
	r.vdis = append(r.vdis, vdi)
	rec, err := r.xen.GetVDI(ctx, vdi)
	if err != nil {
		return "", fmt.Errorf("xenrestore: disk %s: %w", d.UserDevice, err)
	}
	if !xenapi.ValidUUID(rec.UUID) {
		return "", fmt.Errorf("xenrestore: disk %s: the new VDI's uuid %.60q is not a UUID", d.UserDevice, rec.UUID)
	}
	var data int64
	for _, e := range d.Data {
		data += e.Len
	}
	r.event("disk %s (%d/%d): VDI %s created, uploading %d of %d bytes", d.UserDevice, i+1, len(r.opts.Disks), rec.UUID, data, d.Size)
	err = r.xen.ImportRawVDI(ctx, vdi, d.Reader, xenapi.ImportRawOptions{Size: d.Size, Data: d.Data})
	if err != nil {
		return "", fmt.Errorf("xenrestore: disk %s: uploading into VDI %s: %w", d.UserDevice, rec.UUID, err)
	}
	r.event("disk %s: VDI %s written", d.UserDevice, rec.UUID)
	return rec.UUID, nil
}

// undo removes what the run created: the VMs (with their VBDs), then the
// VDIs. It runs with its own deadline, since the caller's context may
// have ended.
func (r *run) undo() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	for _, vm := range r.vms {
		if err := r.xen.DestroyVM(ctx, vm); err != nil {
			errs = append(errs, fmt.Errorf("VM %s is left in the pool (remove it by hand): %w", vm, err))
		}
	}
	for _, vdi := range r.vdis {
		if err := r.xen.DestroyVDI(ctx, vdi); err != nil {
			errs = append(errs, fmt.Errorf("VDI %s is left in the pool (remove it by hand): %w", vdi, err))
		}
	}
	if len(errs) == 0 && len(r.vms)+len(r.vdis) > 0 {
		r.event("cleanup: removed %d VM(s) and %d VDI(s) this restore had created", len(r.vms), len(r.vdis))
	}
	return errors.Join(errs...)
}
