package xenrestore

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/xenapi"
	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
)

const password = "restore-Pa55word"

// pool is a simulated pool served on loopback with a session; it counts
// the body bytes of PUT /import_raw_vdi.
type pool struct {
	t        *testing.T
	sim      *xapisim.Sim
	s        *xenapi.Session
	vm       string // uuid of "web", halted: disks 0 and 1, a CD at 3
	srUUID   string
	putBytes atomic.Int64
}

var diskSizes = []int64{2 << 20, 1<<20 + 3*512}

func newPool(t *testing.T) *pool {
	t.Helper()
	c := clocktest.New(time.Date(2026, 12, 5, 13, 0, 0, 0, time.UTC))
	sim, err := xapisim.Init(filepath.Join(t.TempDir(), "state"), password, c)
	if err != nil {
		t.Fatal(err)
	}
	p := &pool{t: t, sim: sim}
	if p.vm, err = sim.CreateVMState("web", diskSizes, true, true); err != nil {
		t.Fatal(err)
	}
	h := &xapisim.Handler{Sim: sim}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/import_raw_vdi") {
			r.Body = counted{r.Body, &p.putBytes}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.s, err = xenapi.Login(context.Background(), xenapi.Config{URL: srv.URL, User: "root", Password: password,
		AllowPlainLoopback: true, Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	srs, err := p.s.GetAllSRs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, sr := range srs {
		if sr.NameLabel == "Local storage" {
			p.srUUID = sr.UUID
		}
	}
	return p
}

type counted struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c counted) Read(b []byte) (int, error) {
	k, err := c.ReadCloser.Read(b)
	c.n.Add(int64(k))
	return k, err
}

// image is a disk of size bytes: random runs of data between holes, at
// unaligned offsets, its last bytes data; and its data extents.
func image(size int64, seed uint64) ([]byte, []Extent) {
	img := make([]byte, size)
	r := rand.New(rand.NewPCG(seed, 7))
	var data []Extent
	for off := int64(r.IntN(5000)); off < size; {
		n := min(int64(1+r.IntN(200000)), size-off)
		for i := off; i < off+n; i++ {
			img[i] = byte(r.Uint32()) | 1
		}
		data = append(data, Extent{Off: off, Len: n})
		off += n + int64(1+r.IntN(300000))
	}
	last := data[len(data)-1]
	if last.End() != size {
		img[size-1] = 0xee
		data = append(data, Extent{Off: size - 1, Len: 1})
	}
	return img, data
}

// setup returns the metadata archive of "web" and a Disk per disk,
// holding generated images; the second return value are the images.
func (p *pool) setup() ([]byte, []Disk, [][]byte) {
	p.t.Helper()
	ctx := context.Background()
	tarball, err := p.s.ExportMetadata(ctx, p.vm, 1<<20)
	if err != nil {
		p.t.Fatal(err)
	}
	l, err := p.sim.List()
	if err != nil {
		p.t.Fatal(err)
	}
	var disks []Disk
	var imgs [][]byte
	for _, vm := range l.VMs {
		if vm.UUID != p.vm {
			continue
		}
		for _, b := range vm.VBDs {
			if b.Type != "Disk" {
				continue
			}
			n, _ := strconv.Atoi(b.UserDevice)
			img, data := image(diskSizes[n], uint64(n+1))
			imgs = append(imgs, img)
			disks = append(disks, Disk{UserDevice: b.UserDevice, VDI: b.VDI, Size: diskSizes[n],
				Reader: bytes.NewReader(img), Data: data, NameLabel: "web disk " + b.UserDevice})
		}
	}
	if len(disks) != 2 {
		p.t.Fatalf("web has %d disks", len(disks))
	}
	return tarball, disks, imgs
}

// vms lists the pool's VMs (not the control domain).
func (p *pool) vms() []xapisim.ListedVM {
	p.t.Helper()
	l, err := p.sim.List()
	if err != nil {
		p.t.Fatal(err)
	}
	return l.VMs
}

func (p *pool) vdiCount() int {
	p.t.Helper()
	l, err := p.sim.List()
	if err != nil {
		p.t.Fatal(err)
	}
	return len(l.VDIs)
}

func TestRestoreGivesTheDisksBack(t *testing.T) {
	p := newPool(t)
	tarball, disks, imgs := p.setup()
	var events []string
	res, err := Restore(context.Background(), Options{Xen: p.s, SR: "Local storage", Metadata: tarball, Disks: disks,
		Events: func(e string) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.VMUUID == p.vm || !xenapi.ValidUUID(res.VMUUID) || len(res.VDIs) != 2 || len(events) < 4 {
		t.Fatalf("result %+v, events %q", res, events)
	}
	for i, img := range imgs {
		out := filepath.Join(t.TempDir(), "disk.img")
		if err := p.sim.Export(xapisim.DiskRef{VM: res.VMUUID, N: i}, out); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, img) {
			t.Fatalf("disk %d of the restored VM differs from its image", i)
		}
	}
	p.checkVM(res)
	var want int64
	for _, d := range disks {
		want += xenapi.ChunkedLength(d.Data)
	}
	if got := p.putBytes.Load(); got != want {
		t.Fatalf("%d bytes crossed the wire, want %d: the data and its headers only", got, want)
	}
}

// checkVM checks the restored VM: halted, its disks on the new VDIs at
// the original userdevices, the CD kept.
func (p *pool) checkVM(res Result) {
	p.t.Helper()
	var orig, made *xapisim.ListedVM
	vms := p.vms()
	for i := range vms {
		switch vms[i].UUID {
		case p.vm:
			orig = &vms[i]
		case res.VMUUID:
			made = &vms[i]
		}
	}
	if orig == nil || made == nil || len(vms) != 2 || made.PowerState != "Halted" || made.NameLabel != "web" {
		p.t.Fatalf("VMs after the restore: %+v", vms)
	}
	if len(made.VBDs) != len(orig.VBDs) {
		p.t.Fatalf("the restored VM has %d VBDs, the original %d", len(made.VBDs), len(orig.VBDs))
	}
	for i, b := range made.VBDs {
		o := orig.VBDs[i]
		if b.UserDevice != o.UserDevice || b.Type != o.Type || b.Mode != o.Mode || b.Attached {
			p.t.Errorf("VBD %d is %+v, the original's %+v", i, b, o)
		}
		if b.Type == "Disk" && !slices.Contains(res.VDIs, b.VDI) || b.Type == "CD" && b.VDI != o.VDI {
			p.t.Errorf("VBD %s is attached to VDI %s", b.UserDevice, b.VDI)
		}
	}
}

func TestRestoreFailuresLeaveNothing(t *testing.T) {
	for name, c := range map[string]struct {
		prepare func(p *pool, disks []Disk) []Disk
		want    string
	}{
		"SR full": {func(p *pool, disks []Disk) []Disk {
			if err := p.sim.SetSRSize(p.srUUID, diskSizes[0]+diskSizes[1]+(3<<20)); err != nil {
				t.Fatal(err)
			}
			return disks
		}, "bytes free"},
		"second upload refused half-way": {func(p *pool, disks []Disk) []Disk {
			if err := p.sim.SetSwitch(xapisim.SwitchImportFail + "=2"); err != nil {
				t.Fatal(err)
			}
			return disks
		}, "VDI_IO_ERROR"},
		"metadata import fails": {func(p *pool, disks []Disk) []Disk {
			if err := p.sim.SetSwitch(xapisim.SwitchMetadataFail); err != nil {
				t.Fatal(err)
			}
			return disks
		}, "recreating the VM from its metadata"},
		// Caught before the pool is touched: xapi would leave the disk
		// out of the VM, or attach the original's VDI when it is there.
		"metadata names a VDI not restored": {func(p *pool, disks []Disk) []Disk {
			p.removeOriginal()
			return disks[:1]
		}, "is not among the disks to restore"},
		"metadata from another VM": {func(p *pool, disks []Disk) []Disk {
			extra := disks[1]
			extra.UserDevice, extra.VDI = "2", "00000000-0000-4000-8000-0000000000cc"
			return append(disks, extra)
		}, "not a disk of the VM the metadata describes"},
	} {
		t.Run(name, func(t *testing.T) {
			p := newPool(t)
			tarball, disks, _ := p.setup()
			disks = c.prepare(p, disks)
			vms, vdis := len(p.vms()), p.vdiCount()
			_, err := Restore(context.Background(), Options{Xen: p.s, SR: p.srUUID, Metadata: tarball, Disks: disks})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error about %s", err, c.want)
			}
			if len(p.vms()) != vms || p.vdiCount() != vdis {
				t.Fatalf("the failed restore left VMs %d -> %d, VDIs %d -> %d", vms, len(p.vms()), vdis, p.vdiCount())
			}
		})
	}
}

// removeOriginal destroys web and its disks, as in a pool the VM never
// lived in.
func (p *pool) removeOriginal() {
	p.t.Helper()
	ctx := context.Background()
	ref, err := p.s.GetVMByUUID(ctx, p.vm)
	if err != nil {
		p.t.Fatal(err)
	}
	rec, err := p.s.GetVM(ctx, ref)
	if err != nil {
		p.t.Fatal(err)
	}
	var disks []xenapi.Ref
	for _, b := range rec.VBDs {
		if vbd, err := p.s.GetVBD(ctx, b); err == nil && vbd.Type == xenapi.VBDTypeDisk {
			disks = append(disks, vbd.VDI)
		}
	}
	if err := p.s.DestroyVM(ctx, ref); err != nil {
		p.t.Fatal(err)
	}
	for _, d := range disks {
		if err := p.s.DestroyVDI(ctx, d); err != nil {
			p.t.Fatal(err)
		}
	}
}

func TestRestoreRefusesBadOptions(t *testing.T) {
	p := newPool(t)
	tarball, disks, _ := p.setup()
	bad := func(mut func(d []Disk) []Disk) []Disk { return mut(slices.Clone(disks)) }
	for name, o := range map[string]Options{
		"no session":  {SR: "x", Metadata: tarball, Disks: disks},
		"no SR":       {Xen: p.s, Metadata: tarball, Disks: disks},
		"no metadata": {Xen: p.s, SR: "x", Disks: disks},
		"no disks":    {Xen: p.s, SR: "x", Metadata: tarball},
		"unknown SR":  {Xen: p.s, SR: "nowhere", Metadata: tarball, Disks: disks},
		"ISO SR":      {Xen: p.s, SR: "XenServer Tools", Metadata: tarball, Disks: disks},
		"bad VDI": {Xen: p.s, SR: p.srUUID, Metadata: tarball, Disks: bad(func(d []Disk) []Disk {
			d[0].VDI = "nope"
			return d
		})},
		"repeated userdevice": {Xen: p.s, SR: p.srUUID, Metadata: tarball, Disks: bad(func(d []Disk) []Disk {
			d[1].UserDevice = d[0].UserDevice
			return d
		})},
		"extent past the end": {Xen: p.s, SR: p.srUUID, Metadata: tarball, Disks: bad(func(d []Disk) []Disk {
			d[0].Data = []Extent{{Off: d[0].Size - 1, Len: 2}}
			return d
		})},
	} {
		vdis := p.vdiCount()
		if _, err := Restore(context.Background(), o); err == nil {
			t.Errorf("%s: no error", name)
		}
		if p.vdiCount() != vdis {
			t.Fatalf("%s: the refused restore created VDIs", name)
		}
	}
}

// undo removes a VM it was given with its VBDs, and the VDIs.
func TestUndoRemovesTheVM(t *testing.T) {
	p := newPool(t)
	tarball, disks, _ := p.setup()
	ctx := context.Background()
	r := &run{opts: Options{Xen: p.s}, xen: p.s}
	vdiMap := map[string]string{}
	for _, d := range disks {
		vdi, err := p.s.CreateVDI(ctx, xenapi.VDISpec{NameLabel: "x", SR: p.srRef(), VirtualSize: d.Size})
		if err != nil {
			t.Fatal(err)
		}
		r.vdis = append(r.vdis, vdi)
		rec, _ := p.s.GetVDI(ctx, vdi)
		vdiMap[d.VDI] = rec.UUID
	}
	vms, err := p.s.ImportMetadata(ctx, tarball, vdiMap, xenapi.MetadataImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.vms = vms
	if len(p.vms()) != 2 {
		t.Fatal("the import made no VM")
	}
	if err := r.undo(); err != nil {
		t.Fatal(err)
	}
	if len(p.vms()) != 1 || p.vdiCount() != 3 {
		t.Fatalf("after undo: %d VMs, %d VDIs; want the original VM and its 2 disks and the ISO", len(p.vms()), p.vdiCount())
	}
	vbds, err := p.s.GetAllVBDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range vbds {
		if b.VM == vms[0] {
			t.Fatal("a VBD of the removed VM is left")
		}
	}
}

func (p *pool) srRef() xenapi.Ref {
	p.t.Helper()
	all, err := p.s.GetAllSRs(context.Background())
	if err != nil {
		p.t.Fatal(err)
	}
	for ref, sr := range all {
		if sr.UUID == p.srUUID {
			return ref
		}
	}
	p.t.Fatal("no SR")
	return ""
}

// A restore cancelled while it uploads removes what it made and says so.
func TestRestoreCancelled(t *testing.T) {
	p := newPool(t)
	tarball, disks, _ := p.setup()
	vdis := p.vdiCount()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := func(e string) {
		if strings.HasPrefix(e, "disk 1 ") {
			cancel()
		}
	}
	_, err := Restore(ctx, Options{Xen: p.s, SR: p.srUUID, Metadata: tarball, Disks: disks, Events: events})
	if err == nil || !strings.Contains(err.Error(), "context canceled") || !strings.Contains(err.Error(), "disk 1") {
		t.Fatalf("got %v, want the cancellation, naming disk 1", err)
	}
	if p.vdiCount() != vdis || len(p.vms()) != 1 {
		t.Fatalf("a cancelled restore left VDIs %d -> %d", vdis, p.vdiCount())
	}
}
