package xenapi_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/xenapi"
	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
)

const simPassword = "sim-Pa55word"

// simPool is the simulator served over plain loopback HTTP, with a
// session, counting the body bytes of every PUT /import_raw_vdi.
type simPool struct {
	sim      *xapisim.Sim
	s        *xenapi.Session
	vm       string // uuid of "web": a halted VM, disks of 1 MiB and 192 KiB, a CD
	putBytes atomic.Int64
	putLen   atomic.Int64
}

func newSimPool(t *testing.T) *simPool {
	t.Helper()
	c := clocktest.New(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	sim, err := xapisim.Init(filepath.Join(t.TempDir(), "state"), simPassword, c)
	if err != nil {
		t.Fatal(err)
	}
	p := &simPool{sim: sim}
	if p.vm, err = sim.CreateVMState("web", []int64{1 << 20, 192 << 10}, true, true); err != nil {
		t.Fatal(err)
	}
	h := &xapisim.Handler{Sim: sim}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/import_raw_vdi") {
			p.putLen.Add(r.ContentLength)
			r.Body = countingBody{r.Body, &p.putBytes}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.s, err = xenapi.Login(context.Background(), xenapi.Config{URL: srv.URL, User: "root", Password: simPassword,
		AllowPlainLoopback: true, Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingBody) Read(p []byte) (int, error) {
	k, err := c.ReadCloser.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// defaultSR is the pool's default SR.
func (p *simPool) defaultSR(t *testing.T) xenapi.Ref {
	t.Helper()
	_, pool, err := p.s.GetPool(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return pool.DefaultSR
}

// newVDI creates an empty VDI of size bytes on the default SR.
func (p *simPool) newVDI(t *testing.T, size int64) xenapi.Ref {
	t.Helper()
	vdi, err := p.s.CreateVDI(context.Background(), xenapi.VDISpec{NameLabel: "target", SR: p.defaultSR(t), VirtualSize: size})
	if err != nil {
		t.Fatal(err)
	}
	return vdi
}

// read reads a whole VDI back with export_raw_vdi.
func (p *simPool) read(t *testing.T, vdi xenapi.Ref, size int64) []byte {
	t.Helper()
	rc, err := p.s.ExportRawVDI(context.Background(), vdi, size)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sparseImage is a disk of size bytes holding random data in extents
// (unaligned on purpose, one longer than a chunk) and zeros elsewhere.
func sparseImage(size int64, extents []xenapi.Extent) []byte {
	img := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for _, e := range extents {
		for i := e.Off; i < e.End(); i++ {
			img[i] = byte(r.Uint32()) | 1
		}
	}
	return img
}

func TestImportRawVDISendsOnlyData(t *testing.T) {
	p := newSimPool(t)
	const size = 6 << 20
	data := []xenapi.Extent{{Off: 100, Len: 3000}, {Off: 70000, Len: 65536}, {Off: 1 << 20, Len: xenapi.MaxChunk + 4097}, {Off: size - 512, Len: 512}}
	img := sparseImage(size, data)
	vdi := p.newVDI(t, size)
	if err := p.s.ImportRawVDI(context.Background(), vdi, bytes.NewReader(img), xenapi.ImportRawOptions{Size: size, Data: data}); err != nil {
		t.Fatal(err)
	}
	if got := p.read(t, vdi, size); !bytes.Equal(got, img) {
		t.Fatal("the VDI does not read back as the image")
	}
	var dataBytes int64
	for _, e := range data {
		dataBytes += e.Len
	}
	// 5 chunks (the long extent takes two) and the end marker.
	want := dataBytes + 6*xenapi.ChunkHeaderSize
	if got := p.putBytes.Load(); got != want || p.putLen.Load() != want || xenapi.ChunkedLength(data) != want {
		t.Fatalf("the wire carried %d bytes (Content-Length %d, ChunkedLength %d), want %d: the data and 6 headers", got, p.putLen.Load(), xenapi.ChunkedLength(data), want)
	}
}

func TestImportRawVDIEmptyDisk(t *testing.T) {
	p := newSimPool(t)
	vdi := p.newVDI(t, 1<<20)
	if err := p.s.ImportRawVDI(context.Background(), vdi, bytes.NewReader(nil), xenapi.ImportRawOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if p.putBytes.Load() != xenapi.ChunkHeaderSize {
		t.Fatalf("an empty disk sent %d bytes, want the end marker only", p.putBytes.Load())
	}
}

func TestImportRawVDIRefusals(t *testing.T) {
	p := newSimPool(t)
	const size = 1 << 20
	vdi := p.newVDI(t, size)
	ctx := context.Background()
	for name, data := range map[string][]xenapi.Extent{
		"past the end": {{Off: size - 10, Len: 11}},
		"overlapping":  {{Off: 0, Len: 100}, {Off: 50, Len: 100}},
		"unsorted":     {{Off: 500, Len: 10}, {Off: 0, Len: 10}},
		"empty extent": {{Off: 0, Len: 0}},
	} {
		err := p.s.ImportRawVDI(ctx, vdi, bytes.NewReader(make([]byte, size)), xenapi.ImportRawOptions{Size: size, Data: data})
		if err == nil || !strings.Contains(err.Error(), "extent") {
			t.Errorf("%s: %v, want an error naming the extent", name, err)
		}
	}
	if p.putBytes.Load() != 0 {
		t.Fatal("bad extents reached the wire")
	}
	// A reader that ends inside an extent: the transfer fails, the VDI
	// stays as it was.
	short := bytes.NewReader(bytes.Repeat([]byte{7}, 4096))
	err := p.s.ImportRawVDI(ctx, vdi, short, xenapi.ImportRawOptions{Size: size, Data: []xenapi.Extent{{Off: 0, Len: 8192}}})
	if err == nil || !strings.Contains(err.Error(), "inside a data extent") {
		t.Fatalf("short reader: %v", err)
	}
	if !bytes.Equal(p.read(t, vdi, size), make([]byte, size)) {
		t.Fatal("a failed upload changed the VDI")
	}
}

func TestImportRawVDIFailsHalfWay(t *testing.T) {
	p := newSimPool(t)
	const size = 1 << 20
	vdi := p.newVDI(t, size)
	if err := p.sim.SetSwitch(xapisim.SwitchImportFail + "=1"); err != nil {
		t.Fatal(err)
	}
	img := sparseImage(size, []xenapi.Extent{{Off: 0, Len: size}})
	err := p.s.ImportRawVDI(context.Background(), vdi, bytes.NewReader(img), xenapi.ImportRawOptions{Size: size, Data: []xenapi.Extent{{Off: 0, Len: size}}})
	var xe *xenapi.Error
	if !errors.As(err, &xe) || xe.Code != "VDI_IO_ERROR" || !strings.Contains(err.Error(), "import_raw_vdi of VDI "+string(vdi)) {
		t.Fatalf("got %v, want the task's VDI_IO_ERROR naming the call and the VDI", err)
	}
	if !bytes.Equal(p.read(t, vdi, size), make([]byte, size)) {
		t.Fatal("a refused upload changed the VDI")
	}
	// The switch fired once: the next upload goes through.
	if err := p.s.ImportRawVDI(context.Background(), vdi, bytes.NewReader(img), xenapi.ImportRawOptions{Size: size, Data: []xenapi.Extent{{Off: 0, Len: size}}}); err != nil {
		t.Fatal(err)
	}
}

func TestImportMetadataMakesHaltedVM(t *testing.T) {
	p := newSimPool(t)
	ctx := context.Background()
	tarball, err := p.s.ExportMetadata(ctx, p.vm, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := p.s.GetVMByUUID(ctx, p.vm)
	if err != nil {
		t.Fatal(err)
	}
	origRec, err := p.s.GetVM(ctx, orig)
	if err != nil {
		t.Fatal(err)
	}
	vdiMap := map[string]string{}
	newVDIs := map[string]bool{}
	for _, b := range origRec.VBDs {
		vbd, _ := p.s.GetVBD(ctx, b)
		if vbd.Type != xenapi.VBDTypeDisk {
			continue
		}
		old, _ := p.s.GetVDI(ctx, vbd.VDI)
		nv, _ := p.s.GetVDI(ctx, p.newVDI(t, old.VirtualSize))
		vdiMap[old.UUID], newVDIs[nv.UUID] = nv.UUID, true
	}
	if dry, err := p.s.ImportMetadata(ctx, tarball, vdiMap, xenapi.MetadataImportOptions{DryRun: true}); err != nil || len(dry) != 0 {
		t.Fatalf("dry run: %v %v", dry, err)
	}
	vms, err := p.s.ImportMetadata(ctx, tarball, vdiMap, xenapi.MetadataImportOptions{})
	if err != nil || len(vms) != 1 {
		t.Fatalf("ImportMetadata: %v %v", vms, err)
	}
	vm, err := p.s.GetVM(ctx, vms[0])
	if err != nil {
		t.Fatal(err)
	}
	if vm.UUID == p.vm || vm.NameLabel != "web" || vm.PowerState != xenapi.PowerStateHalted || len(vm.VBDs) != 3 {
		t.Fatalf("new VM %+v", vm)
	}
	for _, b := range vm.VBDs {
		vbd, _ := p.s.GetVBD(ctx, b)
		vdi, _ := p.s.GetVDI(ctx, vbd.VDI)
		if (vbd.Type == xenapi.VBDTypeDisk) != newVDIs[vdi.UUID] {
			t.Errorf("VBD %s (%s) is attached to VDI %s", vbd.Userdevice, vbd.Type, vdi.UUID)
		}
	}
}

func TestImportMetadataRefusals(t *testing.T) {
	p := newSimPool(t)
	ctx := context.Background()
	// A running VM: its disk VBDs are attached, so a missing VDI is an
	// error (a halted VM's would be left out).
	running, err := p.sim.CreateVM("db", []int64{1 << 20}, false)
	if err != nil {
		t.Fatal(err)
	}
	tarball, err := p.s.ExportMetadata(ctx, running, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	// Mapped to a VDI that does not exist: the task's error, nothing made.
	orig, _ := p.s.GetVMByUUID(ctx, running)
	rec, _ := p.s.GetVM(ctx, orig)
	vbd, _ := p.s.GetVBD(ctx, rec.VBDs[0])
	old, _ := p.s.GetVDI(ctx, vbd.VDI)
	_, err = p.s.ImportMetadata(ctx, tarball, map[string]string{old.UUID: "00000000-0000-4000-8000-000000000001"}, xenapi.MetadataImportOptions{})
	if !xenapi.IsCode(err, "IMPORT_ERROR_ATTACHED_DISKS_NOT_FOUND") {
		t.Fatalf("got %v, want IMPORT_ERROR_ATTACHED_DISKS_NOT_FOUND", err)
	}
	if vms, _ := p.s.GetVMsByName(ctx, "db"); len(vms) != 1 {
		t.Fatalf("%d VMs named db after a refused import", len(vms))
	}
	if _, err := p.s.ImportMetadata(ctx, []byte("not a tar at all"), nil, xenapi.MetadataImportOptions{}); err == nil {
		t.Fatal("a body that is not a tar was sent")
	}
	if _, err := p.s.ImportMetadata(ctx, tarball, map[string]string{"x": "y"}, xenapi.MetadataImportOptions{}); err == nil || !strings.Contains(err.Error(), "VDI map") {
		t.Fatalf("bad map: %v", err)
	}
}

func TestParseTaskRefs(t *testing.T) {
	const a, b = "OpaqueRef:0b4b5fc2-5e0c-4f3a-9d0e-3f7ad0c1a001", "OpaqueRef:0b4b5fc2-5e0c-4f3a-9d0e-3f7ad0c1a002"
	for in, want := range map[string]int{
		"": 0, a: 1, "<value>" + a + "</value>": 1,
		"<value><array><data></data></array></value>":                                                 0,
		"<value><array><data><value>" + a + "</value><value>" + b + "</value></data></array></value>": 2,
		"<value><array><data><value><string>" + a + "</string></value></data></array></value>":        1,
	} {
		refs, err := xenapi.ParseTaskRefs(in)
		if err != nil || len(refs) != want {
			t.Errorf("%q: %v %v, want %d refs", in, refs, err, want)
		}
	}
	for _, in := range []string{"nonsense", "<value><array><data><value>x</value></data></array></value>",
		"<value><array><data><value><int>3</int></value></data></array></value>", "<value><array>",
		"<value><array><data><value>OpaqueRef:NULL</value></data></array></value>",
		"<value><array><data></data></array></value><x/>"} {
		if refs, err := xenapi.ParseTaskRefs(in); err == nil {
			t.Errorf("%q: %v, want an error", in, refs)
		}
	}
}

func TestMetadataVBDs(t *testing.T) {
	p := newSimPool(t)
	tarball, err := p.s.ExportMetadata(context.Background(), p.vm, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	vbds, err := xenapi.MetadataVBDs(tarball)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := p.sim.List()
	var want []xenapi.MetadataVBD
	for _, vm := range l.VMs {
		for _, b := range vm.VBDs {
			want = append(want, xenapi.MetadataVBD{Userdevice: b.UserDevice, Type: b.Type, VDI: b.VDI})
		}
	}
	if len(vbds) != 3 || !slices.Equal(vbds, want) {
		t.Fatalf("MetadataVBDs = %+v, want %+v", vbds, want)
	}
	for _, bad := range [][]byte{nil, []byte("not a tar"), tarWith(t, "other.xml", "<value/>"), tarWith(t, "ova.xml", "<value><struct>"),
		tarWith(t, "ova.xml", "<value><struct></struct></value>"), tarWith(t, "ova.xml", "<notvalue/>")} {
		if _, err := xenapi.MetadataVBDs(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func tarWith(t testing.TB, name, content string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write([]byte(content))
	_ = tw.Close()
	return b.Bytes()
}

// FuzzMetadataVBDs: any ova.xml is read or refused, never a panic; what
// is accepted names VDIs by UUID.
func FuzzMetadataVBDs(f *testing.F) {
	ova := `<value><struct><member><name>objects</name><value><array><data>` +
		`<value><struct><member><name>class</name><value>VM</value></member><member><name>id</name><value>OpaqueRef:a</value></member>` +
		`<member><name>snapshot</name><value><struct><member><name>uuid</name><value>x</value></member></struct></value></member></struct></value>` +
		`<value><struct><member><name>class</name><value>VBD</value></member><member><name>id</name><value>OpaqueRef:b</value></member>` +
		`<member><name>snapshot</name><value><struct><member><name>VM</name><value>OpaqueRef:a</value></member>` +
		`<member><name>VDI</name><value>OpaqueRef:c</value></member><member><name>userdevice</name><value>0</value></member>` +
		`<member><name>type</name><value>Disk</value></member><member><name>bootable</name><value><boolean>1</boolean></value></member></struct></value></member></struct></value>` +
		`<value><struct><member><name>class</name><value>VDI</value></member><member><name>id</name><value>OpaqueRef:c</value></member>` +
		`<member><name>snapshot</name><value><struct><member><name>uuid</name><value>0b4b5fc2-5e0c-4f3a-9d0e-3f7ad0c1a001</value></member>` +
		`<member><name>virtual_size</name><value><int>1048576</int></value></member></struct></value></member></struct></value>` +
		`</data></array></value></member></struct></value>`
	f.Add(ova)
	f.Add(`<value><array><data><value><i4>1</i4></value></data></array></value>`)
	f.Add(`<value>` + strings.Repeat(`<array><data><value>`, 40))
	f.Fuzz(func(t *testing.T, doc string) {
		vbds, err := xenapi.MetadataVBDs(tarWith(t, "ova.xml", doc))
		if err != nil {
			return
		}
		for _, b := range vbds {
			if b.Userdevice == "" || (b.VDI != "" && !xenapi.ValidUUID(b.VDI)) {
				t.Fatalf("accepted %+v", b)
			}
		}
	})
}

// FuzzParseTaskRefs: any task result is read or refused, never a panic;
// what is accepted are references.
func FuzzParseTaskRefs(f *testing.F) {
	for _, s := range []string{"", "OpaqueRef:0b4b5fc2-5e0c-4f3a-9d0e-3f7ad0c1a001",
		"<value><array><data><value>OpaqueRef:a</value><value><string>OpaqueRef:b</string></value></data></array></value>",
		"<value><array><data><value><int>1</int></value></data></array></value>", "<value><array>", "<value>OpaqueRef:NULL</value>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		refs, err := xenapi.ParseTaskRefs(s)
		if err != nil {
			return
		}
		for _, r := range refs {
			if !strings.HasPrefix(string(r), "OpaqueRef:") || r.IsNull() {
				t.Fatalf("accepted %q from %q", r, s)
			}
		}
	})
}
