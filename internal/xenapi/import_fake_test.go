package xenapi

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
)

const importTask = "OpaqueRef:7a5c0000-0000-4000-8000-00000000beef"

// A host that answers an upload with an error page quoting the request
// (session included) and leaves the task pending: the error names the
// call, the object and the status, never the session, and the task is
// cancelled and destroyed.
func TestImportErrorsHideTheSession(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	f.result("task.create", importTask)
	f.result("task.get_status", "pending")
	f.result("task.cancel", "")
	f.result("task.destroy", "")
	var gotLength int64
	f.mux.HandleFunc("PUT /import_raw_vdi", func(w http.ResponseWriter, r *http.Request) {
		gotLength = r.ContentLength
		if r.URL.Query().Get("task_id") != importTask || !r.URL.Query().Has("chunked") || r.URL.Query().Get("format") != "raw" {
			t.Errorf("query %v", r.URL.Query())
		}
		http.Error(w, "500 internal error handling "+r.URL.String(), http.StatusInternalServerError)
	})
	const vdi = Ref("OpaqueRef:0b4b5fc2-5e0c-4f3a-9d0e-3f7ad0c1a0aa")
	data := []Extent{{Off: 0, Len: 4096}}
	err := s.ImportRawVDI(context.Background(), vdi, bytes.NewReader(make([]byte, 4096)), ImportRawOptions{Size: 1 << 20, Data: data})
	if err == nil || strings.Contains(err.Error(), string(testSession)) || !strings.Contains(err.Error(), string(vdi)) || !strings.Contains(err.Error(), "500") {
		t.Fatalf("error %v: want one naming the VDI and HTTP 500, without the session", err)
	}
	if gotLength != 4096+2*ChunkHeaderSize {
		t.Fatalf("Content-Length %d", gotLength)
	}
	if f.called("task.cancel") != 1 || f.called("task.destroy") != 1 {
		t.Fatalf("task.cancel %d times, task.destroy %d times", f.called("task.cancel"), f.called("task.destroy"))
	}
}

// A failed task's error_info is the error, with the session redacted.
func TestImportMetadataTaskFailure(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	f.result("task.create", importTask)
	f.result("task.get_status", "failure")
	f.result("task.get_error_info", []string{"IMPORT_ERROR", "bad archive for " + string(testSession)})
	f.result("task.cancel", "")
	f.result("task.destroy", "")
	f.mux.HandleFunc("PUT /import_metadata", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("vdi:"+vmUUID) != "0b4b5fc2-5e0c-4f3a-9d0e-3f7ad0c1a001" || r.URL.Query().Get("restore") != "false" {
			t.Errorf("query %v", r.URL.Query())
		}
		http.Error(w, "import failed", http.StatusInternalServerError)
	})
	_, err := s.ImportMetadata(context.Background(), metadataTar(t), map[string]string{vmUUID: "0b4b5fc2-5e0c-4f3a-9d0e-3f7ad0c1a001"}, MetadataImportOptions{})
	if !IsCode(err, "IMPORT_ERROR") || strings.Contains(err.Error(), string(testSession)) {
		t.Fatalf("got %v, want the task's IMPORT_ERROR without the session", err)
	}
}

// A successful metadata import returns the task's set of VMs.
func TestImportMetadataResult(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	const vm = "OpaqueRef:0b4b5fc2-5e0c-4f3a-9d0e-3f7ad0c1a0cc"
	f.result("task.create", importTask)
	f.result("task.get_status", "success")
	f.result("task.get_result", "<value><array><data><value>"+vm+"</value></data></array></value>")
	f.result("task.destroy", "")
	f.mux.HandleFunc("PUT /import_metadata", func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		if int64(b.Len()) != r.ContentLength || len(r.TransferEncoding) != 0 {
			t.Errorf("body %d bytes, Content-Length %d, encoding %v", b.Len(), r.ContentLength, r.TransferEncoding)
		}
	})
	vms, err := s.ImportMetadata(context.Background(), metadataTar(t), nil, MetadataImportOptions{})
	if err != nil || len(vms) != 1 || vms[0] != vm {
		t.Fatalf("%v %v", vms, err)
	}
}
