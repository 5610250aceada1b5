package xapisim

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
)

// chunk is one sparse-protocol header and its data.
func chunk(off uint64, data []byte) []byte {
	b := make([]byte, chunkHeader, chunkHeader+len(data))
	binary.LittleEndian.PutUint64(b, off)
	binary.LittleEndian.PutUint32(b[8:], uint32(len(data)))
	return append(b, data...)
}

var endOfChunks = chunk(0, nil)

func body(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// put sends a PUT straight to the handler with the given Content-Length
// (which may differ from the body's) and returns the status.
func (f *fixture) put(path string, q url.Values, b []byte, length int64) int {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodPut, path+"?"+q.Encode(), bytes.NewReader(b))
	r.ContentLength = length
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, r)
	return rec.Code
}

// newVDI makes an empty VDI on the default SR and returns its ref.
func (f *fixture) newVDI(s string, size int64) string {
	f.t.Helper()
	var sr string
	_ = f.sim.View(func(st *State) error { sr = st.Pool.DefaultSR; return nil })
	return f.ok("VDI.create", s, map[string]any{"SR": sr, "virtual_size": size, "type": "user", "sharable": false,
		"read_only": false, "other_config": map[string]any{}, "name_label": "target"}).(string)
}

// vdiBytes reads a VDI whole.
func (f *fixture) vdiBytes(ref string) []byte {
	f.t.Helper()
	out := filepath.Join(f.t.TempDir(), "vdi.img")
	if err := f.sim.exportVDI(ref, out); err != nil {
		f.t.Fatal(err)
	}
	return readFile(f.t, out)
}

// chunkedPut uploads b to vdi with the chunked flag under a new task; it
// returns the HTTP status and the task's error_info.
func (f *fixture) chunkedPut(s, vdi string, b []byte, length int64) (int, []any) {
	f.t.Helper()
	task := f.ok("task.create", s, "import", "").(string)
	q := url.Values{"vdi": {vdi}, "format": {"raw"}, "chunked": {""}, "session_id": {s}, "task_id": {task}}
	code := f.put("/import_raw_vdi", q, b, length)
	if st := f.ok("task.get_status", s, task); (st == "success") != (code == http.StatusOK) {
		f.t.Fatalf("HTTP %d but the task's status is %v", code, st)
	}
	info, _ := f.ok("task.get_error_info", s, task).([]any)
	return code, info
}

func TestChunkedImport(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	const size = 256 << 10
	vdi := f.newVDI(s, size)
	a, b := bytes.Repeat([]byte{0xaa}, 70000), bytes.Repeat([]byte{0xbb}, 100)
	good := body(chunk(1000, a), chunk(size-100, b), endOfChunks)
	if code, info := f.chunkedPut(s, vdi, good, int64(len(good))); code != http.StatusOK {
		t.Fatalf("a good upload: HTTP %d %v", code, info)
	}
	want := make([]byte, size)
	copy(want[1000:], a)
	copy(want[size-100:], b)
	if !bytes.Equal(f.vdiBytes(vdi), want) {
		t.Fatal("the VDI does not hold the chunks at their offsets (and zeros elsewhere)")
	}
	// Each refusal leaves the VDI as the good upload made it.
	for name, bad := range map[string]struct {
		b      []byte
		length int64
	}{
		"header cut short":             {good[:7], 7},
		"chunk past the VDI's end":     {body(chunk(size-10, b), endOfChunks), 0},
		"chunk at an offset past end":  {body(chunk(1<<40, b), endOfChunks), 0},
		"no end marker":                {chunk(0, a), 0},
		"bytes after the end marker":   {body(chunk(0, b), endOfChunks, []byte{1}), 0},
		"end marker with an offset":    {body(chunk(0, b), chunk(4096, nil)), 0},
		"Content-Length past the body": {good, int64(len(good)) + 100},
		"Content-Length short of body": {good, int64(len(good)) - 12},
		"chunk past Content-Length":    {body(chunk(0, a), endOfChunks), 5000},
	} {
		length := bad.length
		if length == 0 {
			length = int64(len(bad.b))
		}
		code, info := f.chunkedPut(s, vdi, bad.b, length)
		if code != http.StatusBadRequest || len(info) < 1 || info[0] != errImport {
			t.Errorf("%s: HTTP %d, task error %v; want 400 and %s", name, code, info, errImport)
		}
		if !bytes.Equal(f.vdiBytes(vdi), want) {
			t.Fatalf("%s: the refused upload changed the VDI", name)
		}
	}
	if left, _ := f.sim.stagingFiles(); len(left) != 0 {
		t.Fatalf("staging files left behind: %v", left)
	}
	q := url.Values{"vdi": {vdi}, "format": {"vhd"}, "chunked": {""}, "session_id": {s}}
	if code := f.put("/import_raw_vdi", q, good, int64(len(good))); code != http.StatusBadRequest {
		t.Fatalf("chunked with format=vhd: HTTP %d, want 400", code)
	}
}

func TestImportFailSwitch(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	vdi := f.newVDI(s, 1<<20)
	good := body(chunk(0, bytes.Repeat([]byte{1}, 200000)), endOfChunks)
	if err := f.sim.SetSwitch(SwitchImportFail + "=2"); err != nil {
		t.Fatal(err)
	}
	if code, info := f.chunkedPut(s, vdi, good, int64(len(good))); code != http.StatusOK {
		t.Fatalf("first import: HTTP %d %v", code, info)
	}
	other := f.newVDI(s, 1<<20)
	code, info := f.chunkedPut(s, other, good, int64(len(good)))
	if code != http.StatusInternalServerError || len(info) == 0 || info[0] != errVDIIO {
		t.Fatalf("second import: HTTP %d %v, want 500 and %s", code, info, errVDIIO)
	}
	if !bytes.Equal(f.vdiBytes(other), make([]byte, 1<<20)) {
		t.Fatal("the failed import changed the VDI")
	}
	l, _ := f.sim.List()
	if _, on := l.Switches[SwitchImportFail]; on {
		t.Fatal("the switch stays on after it fired")
	}
}

// metadata is export_metadata's archive of the fixture's VM.
func (f *fixture) metadata(s string) []byte {
	f.t.Helper()
	resp := f.get("/export_metadata?uuid=" + f.vm + "&session_id=" + s)
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		f.t.Fatalf("export_metadata: %d %v", resp.StatusCode, err)
	}
	return b
}

// importMetadata PUTs an archive with a query and returns the status and
// the task's result or error_info.
func (f *fixture) importMetadata(s string, archive []byte, q url.Values) (int, string, []any) {
	f.t.Helper()
	task := f.ok("task.create", s, "import", "").(string)
	q.Set("session_id", s)
	q.Set("task_id", task)
	code := f.put("/import_metadata", q, archive, int64(len(archive)))
	res, _ := f.ok("task.get_result", s, task).(string)
	info, _ := f.ok("task.get_error_info", s, task).([]any)
	return code, res, info
}

func TestImportMetadata(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	archive := f.metadata(s)
	old := f.disks(s, f.vmRef(s))
	q := url.Values{}
	var newUUIDs []string
	for _, d := range old {
		nv := f.newVDI(s, 1<<20)
		u := f.ok("VDI.get_uuid", s, nv).(string)
		q.Set("vdi:"+f.ok("VDI.get_uuid", s, d).(string), u)
		newUUIDs = append(newUUIDs, u)
	}
	dry := url.Values{"dry_run": {"true"}}
	for k, v := range q {
		dry[k] = v
	}
	if code, res, _ := f.importMetadata(s, archive, dry); code != http.StatusOK || res != "<value><array><data></data></array></value>" {
		t.Fatalf("dry run: HTTP %d, result %q", code, res)
	}
	code, res, info := f.importMetadata(s, archive, q)
	if code != http.StatusOK || !strings.HasPrefix(res, "<value><array><data><value>OpaqueRef:") {
		t.Fatalf("import: HTTP %d, result %q, error %v", code, res, info)
	}
	l, _ := f.sim.List()
	var made *ListedVM
	for i, vm := range l.VMs {
		if vm.NameLabel == "web" && vm.UUID != f.vm {
			made = &l.VMs[i]
		}
	}
	if made == nil || made.PowerState != "Halted" || len(made.VBDs) != 3 || len(l.VMs) != 2 {
		t.Fatalf("after the import: %+v", l.VMs)
	}
	for i, b := range made.VBDs {
		want := []string{"0", "1", "3"}[i]
		if b.UserDevice != want || (b.Type == "Disk" && b.VDI != newUUIDs[i]) || (b.Type == "CD" && b.Mode != "RO") {
			t.Errorf("VBD %d: %+v", i, b)
		}
	}
	if boot := f.ok("VBD.get_bootable", s, f.ok("VM.get_VBDs", s, made.Ref).([]any)[0]); boot != true {
		t.Errorf("the new VM's userdevice 0 is not bootable")
	}
}

func TestImportMetadataRefusals(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	archive := f.metadata(s)
	d0 := f.ok("VDI.get_uuid", s, f.disks(s, f.vmRef(s))[0]).(string)
	missing := "00000000-0000-4000-8000-0000000000aa"
	for name, c := range map[string]struct {
		archive []byte
		q       url.Values
		code    int
		err     string
	}{
		"mapped VDI missing":  {archive, url.Values{"vdi:" + d0: {missing}}, http.StatusNotFound, errImportDisksMissing},
		"bad map":             {archive, url.Values{"vdi:nope": {missing}}, http.StatusBadRequest, errImport},
		"bad flag":            {archive, url.Values{"restore": {"perhaps"}}, http.StatusBadRequest, errImport},
		"not a tar":           {[]byte("hello"), url.Values{}, http.StatusBadRequest, errImport},
		"restore over the VM": {archive, url.Values{"restore": {"true"}}, http.StatusConflict, errImport},
		"no ova.xml":          {tarOf(t, "other.xml", "<value/>"), url.Values{}, http.StatusBadRequest, errImport},
		"ova.xml not XML-RPC": {tarOf(t, "ova.xml", "<value><struct>"), url.Values{}, http.StatusBadRequest, errImport},
	} {
		code, _, info := f.importMetadata(s, c.archive, c.q)
		if code != c.code || len(info) == 0 || info[0] != c.err {
			t.Errorf("%s: HTTP %d %v, want %d and %s", name, code, info, c.code, c.err)
		}
	}
	if l, _ := f.sim.List(); len(l.VMs) != 1 {
		t.Fatalf("a refused import left %d VMs", len(l.VMs))
	}
	q := url.Values{"session_id": {"OpaqueRef:00000000-0000-4000-8000-000000000000"}}
	if code := f.put("/import_metadata", q, archive, int64(len(archive))); code != http.StatusUnauthorized {
		t.Fatalf("no session: HTTP %d", code)
	}
}

func tarOf(t *testing.T, name, content string) []byte {
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

// FuzzParseChunked: any body is parsed or refused, never a panic; what is
// accepted is laid out as the protocol says.
func FuzzParseChunked(f *testing.F) {
	f.Add(body(chunk(0, []byte("abc")), endOfChunks), int64(4096))
	f.Add(body(chunk(4093, []byte("abc")), chunk(0, []byte{1}), endOfChunks), int64(4096))
	f.Add(body(chunk(4094, []byte("abc")), endOfChunks), int64(4096))
	f.Add(endOfChunks, int64(512))
	f.Add(body(chunk(0, []byte("abc")), chunk(3, nil)), int64(4096))
	f.Add([]byte{1, 2, 3}, int64(512))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		if size <= 0 || size > 1<<20 {
			return
		}
		var got int64
		spans, err := parseChunked(bytes.NewReader(b), int64(len(b)), size, func(off int64, p []byte) error {
			if off < 0 || off+int64(len(p)) > size {
				return fmt.Errorf("put at %d+%d outside %d", off, len(p), size)
			}
			got += int64(len(p))
			return nil
		})
		if err != nil {
			return
		}
		want := int64(chunkHeader)
		for _, sp := range spans {
			want += chunkHeader + sp.n
			if sp.off < 0 || sp.n <= 0 || sp.off+sp.n > size {
				t.Fatalf("accepted span %+v outside %d", sp, size)
			}
		}
		if want != int64(len(b)) || got+int64(chunkHeader*(len(spans)+1)) != want {
			t.Fatalf("accepted %d bytes as %d spans holding %d", len(b), len(spans), got)
		}
	})
}

// FuzzParseOVA: any ova.xml is parsed or refused, never a panic; an
// accepted VM's VBDs are well-formed.
func FuzzParseOVA(f *testing.F) {
	st := newState(testPassword)
	sim := &Sim{Dir: f.TempDir()}
	_ = sim
	vm, vbd, vdi := "OpaqueRef:vm", "OpaqueRef:vbd", "OpaqueRef:vdi"
	st.VMs[vm] = &VM{UUID: newUUID(), NameLabel: "web", PowerState: "Halted", Memory: 1 << 30, VCPUs: 4}
	st.VDIs[vdi] = &VDI{UUID: newUUID(), SR: st.Pool.DefaultSR, Type: "user", VirtualSize: 1 << 20}
	st.VBDs[vbd] = &VBD{UUID: newUUID(), VM: vm, VDI: vdi, UserDevice: "0", Type: "Disk", Mode: "RW"}
	f.Add(st.ovaXML(vm))
	f.Add([]byte("<value><struct><member><name>objects</name><value><array><data></data></array></value></member></struct></value>"))
	f.Add([]byte("<value><int>3</int></value>"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		v, err := parseOVA(doc)
		if err != nil {
			return
		}
		if !uuidRE.MatchString(v.UUID) {
			t.Fatalf("accepted VM uuid %q", v.UUID)
		}
		for _, b := range v.VBDs {
			if (b.Mode != "RO" && b.Mode != "RW") || (b.VDI != "" && !uuidRE.MatchString(b.VDI)) {
				t.Fatalf("accepted VBD %+v", b)
			}
		}
	})
}

// As xapi does, a halted VM's disk whose VDI the pool lacks is left out
// (no error), and its CD stays.
func TestImportMetadataLeavesOutMissingDisk(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	if _, err := f.sim.CreateVMState("db", []int64{1 << 20}, true, true); err != nil {
		t.Fatal(err)
	}
	ref := f.ok("VM.get_by_name_label", s, "db").([]any)[0]
	uuid := f.ok("VM.get_uuid", s, ref).(string)
	resp := f.get("/export_metadata?uuid=" + uuid + "&session_id=" + s)
	archive, _ := io.ReadAll(resp.Body)
	disk := f.ok("VDI.get_uuid", s, f.disks(s, ref.(string))[0]).(string)
	code, res, info := f.importMetadata(s, archive, url.Values{"vdi:" + disk: {"00000000-0000-4000-8000-0000000000bb"}})
	if code != http.StatusOK || res == "" {
		t.Fatalf("HTTP %d %v", code, info)
	}
	for _, vm := range f.listVMs() {
		if vm.NameLabel == "db" && vm.UUID != uuid && (len(vm.VBDs) != 1 || vm.VBDs[0].Type != "CD") {
			t.Fatalf("the imported VM's VBDs are %+v, want its CD only", vm.VBDs)
		}
	}
}

func (f *fixture) listVMs() []ListedVM {
	f.t.Helper()
	l, err := f.sim.List()
	if err != nil {
		f.t.Fatal(err)
	}
	return l.VMs
}
