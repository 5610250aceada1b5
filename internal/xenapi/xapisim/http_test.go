package xapisim

import (
	"archive/tar"
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

func (f *fixture) get(path string) *http.Response {
	f.t.Helper()
	resp, err := f.client.Get(f.url + path)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestExportRawVDI(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	if err := f.sim.WriteBlocks(DiskRef{VM: "web", N: 0}, []int64{2, 11}, 5); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(t.TempDir(), "want.img")
	if err := f.sim.Export(DiskRef{VM: "web", N: 0}, want); err != nil {
		t.Fatal(err)
	}
	disk := f.disks(s, f.vmRef(s))[0]
	uuid := f.ok("VDI.get_uuid", s, disk).(string)
	for _, id := range []string{disk, uuid} {
		resp := f.get("/export_raw_vdi?vdi=" + id + "&format=RAW&session_id=" + s)
		if resp.StatusCode != http.StatusOK || resp.ContentLength != -1 || len(resp.TransferEncoding) != 0 || !resp.Close {
			t.Fatalf("status %d, length %d, encoding %v, close %v", resp.StatusCode, resp.ContentLength, resp.TransferEncoding, resp.Close)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, readFile(t, want)) {
			t.Fatalf("export of %s differs from the disk (%d bytes)", id, len(body))
		}
	}
	for path, code := range map[string]int{
		"/export_raw_vdi?vdi=" + uuid + "&session_id=OpaqueRef:bad":                  http.StatusUnauthorized,
		"/export_raw_vdi?vdi=" + uuid:                                                http.StatusUnauthorized,
		"/export_raw_vdi?vdi=" + uuid + "&format=zip&session_id=" + s:                http.StatusNotFound,
		"/export_raw_vdi?vdi=" + uuid + "&format=vhd&session_id=" + s:                http.StatusNotImplemented,
		"/export_raw_vdi?vdi=00000000-0000-4000-8000-000000000000&session_id=" + s:   http.StatusNotFound,
		"/export_metadata?uuid=00000000-0000-4000-8000-000000000000&session_id=" + s: http.StatusNotFound,
		"/export_metadata?uuid=" + f.vm + "&session_id=OpaqueRef:bad":                http.StatusUnauthorized,
	} {
		if got := f.get(path).StatusCode; got != code {
			t.Errorf("%s: HTTP %d, want %d", strings.ReplaceAll(path, s, "SESSION"), got, code)
		}
	}
}

func TestExportMetadata(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	resp := f.get("/export_metadata?uuid=" + f.vm + "&session_id=" + s)
	if resp.StatusCode != http.StatusOK || resp.ContentLength <= 0 {
		t.Fatalf("status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	tr := tar.NewReader(resp.Body)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != "ova.xml" {
		t.Fatalf("tar entry %v %v", hdr, err)
	}
	ova, err := io.ReadAll(tr)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(ova))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("ova.xml is not XML: %v", err)
		}
	}
	for _, want := range []string{"<name>objects</name>", "<value>VM</value>", "<value>VDI</value>", "<value>VBD</value>",
		"<name>name_label</name><value>web</value>", "<name>virtual_size</name><value>1048576</value>"} {
		if !bytes.Contains(ova, []byte(want)) {
			t.Errorf("ova.xml lacks %s", want)
		}
	}
}

func TestImportRawVDI(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	f.ok("VDI.enable_cbt", s, f.disks(s, vm)[1])
	s1 := f.disks(s, f.snapshot(s, vm, "n1"))[1]
	rec := f.ok("VM.get_record", s, vm).(map[string]any)
	var vbd, vdi string
	for _, b := range rec["VBDs"].([]any) {
		r := f.ok("VBD.get_record", s, b).(map[string]any)
		if r["userdevice"] == "1" {
			vbd, vdi = b.(string), r["VDI"].(string)
		}
	}
	body := bytes.Repeat([]byte{0xab}, BlockSize+100)
	put := func(q string, b io.Reader, n int64) int {
		req, _ := http.NewRequest(http.MethodPut, f.url+"/import_raw_vdi?"+q, b)
		req.ContentLength = n
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	q := "vdi=" + vdi + "&format=raw&session_id=" + s
	if code := put(q, bytes.NewReader(body), int64(len(body))); code != http.StatusConflict {
		t.Fatalf("import onto an attached VDI: HTTP %d", code)
	}
	f.ok("VBD.unplug", s, vbd)
	if code := put(q, io.NopCloser(bytes.NewReader(body)), -1); code != http.StatusLengthRequired {
		t.Fatalf("chunked import: HTTP %d", code)
	}
	if code := put(q, bytes.NewReader(body), int64(len(body))); code != http.StatusOK {
		t.Fatalf("import: HTTP %d", code)
	}
	s2 := f.disks(s, f.snapshot(s, vm, "n2"))[1]
	if got := setBits(t, f.ok("VDI.list_changed_blocks", s, s1, s2)); !sameBlocks(got, []int64{0, 1}) {
		t.Fatalf("CBT after import: %v", got)
	}
	out := filepath.Join(t.TempDir(), "out.img")
	if err := f.sim.Export(DiskRef{VM: "web", N: 1}, out); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, out)
	if !bytes.Equal(got[:len(body)], body) || !allZero(got[len(body):]) {
		t.Fatal("the disk does not hold the imported bytes")
	}
}

func TestHTTPTasks(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	disk := f.disks(s, f.vmRef(s))[1]
	task := f.ok("task.create", s, "export", "coffer").(string)
	if st := f.ok("task.get_status", s, task); st != "pending" {
		t.Fatalf("new task %v", st)
	}
	if st := f.ok("task.get_status", s, task); st != "pending" {
		t.Fatalf("a polled task.create task finished by itself: %v", st)
	}
	resp := f.get("/export_raw_vdi?vdi=" + disk + "&session_id=" + s + "&task_id=" + task)
	if resp.Header.Get("task-id") != task {
		t.Fatalf("task-id header %q", resp.Header.Get("task-id"))
	}
	if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != 1<<20 {
		t.Fatalf("body %d bytes, %v", n, err)
	}
	waitFor(t, func() bool { return f.ok("task.get_status", s, task) == "success" })

	vm := f.vmRef(s)
	rec := f.ok("VM.get_record", s, vm).(map[string]any)
	for _, b := range rec["VBDs"].([]any) {
		if r := f.ok("VBD.get_record", s, b).(map[string]any); r["VDI"] == disk {
			f.ok("VBD.unplug", s, b)
		}
	}
	task = f.ok("task.create", s, "import", "coffer").(string)
	req, _ := http.NewRequest(http.MethodPut, f.url+"/import_raw_vdi?vdi="+disk+"&session_id="+s+"&task_id="+task, bytes.NewReader(make([]byte, 4096)))
	r2, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusOK || f.ok("task.get_status", s, task) != "success" ||
		f.ok("task.get_result", s, task) != "<value>"+disk+"</value>" {
		t.Fatalf("import: HTTP %d, task %v", r2.StatusCode, f.ok("task.get_record", s, task))
	}
}
