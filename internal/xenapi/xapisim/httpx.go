package xapisim

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// httpSession authenticates an HTTP handler call: session_id in the query
// or a cookie, or Basic auth as root. It answers 401 itself when it fails.
func (h *Handler) httpSession(w http.ResponseWriter, r *http.Request, st *State) (string, bool) {
	s := r.URL.Query().Get("session_id")
	if s == "" {
		if c, err := r.Cookie("session_id"); err == nil {
			s = c.Value
		}
	}
	if s != "" && st.Sessions[s] != nil {
		return s, true
	}
	if u, p, ok := r.BasicAuth(); ok && s == "" && u == "root" && st.Password.check(p) {
		return "", true
	}
	http.Error(w, "401 Unauthorized: log in (session_id query parameter or cookie, or Basic auth)", http.StatusUnauthorized)
	return "", false
}

// vdiByRefOrUUID finds a VDI named by ref or uuid.
func (st *State) vdiByRefOrUUID(id string) string {
	if st.VDIs[id] != nil {
		return id
	}
	for ref, v := range st.VDIs {
		if v.UUID == id {
			return ref
		}
	}
	return ""
}

// serveExportRaw is GET /export_raw_vdi: the whole VDI, zeros included,
// with Connection: close and neither Content-Length nor chunked encoding:
// the body ends when the connection closes, as xapi sends it.
func (h *Handler) serveExportRaw(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	format := strings.ToLower(q.Get("format"))
	switch format {
	case "", "raw":
	case "vhd", "tar", "qcow2":
		http.Error(w, "501 format "+format+" is not simulated: ask for format=raw", http.StatusNotImplemented)
		return
	default:
		http.Error(w, "404 unknown format "+q.Get("format"), http.StatusNotFound)
		return
	}
	if q.Get("base") != "" {
		http.Error(w, "501 differential exports (base=) are not simulated", http.StatusNotImplemented)
		return
	}
	var cr *chainReader
	var uuid string
	status, msg := 0, ""
	err := h.Sim.View(func(st *State) error {
		if _, ok := h.httpSession(w, r, st); !ok {
			status = -1
			return nil
		}
		ref := st.vdiByRefOrUUID(q.Get("vdi"))
		v := st.VDIs[ref]
		switch {
		case v == nil:
			status, msg = http.StatusNotFound, "404 no VDI "+q.Get("vdi")
			return nil
		case v.Type == "cbt_metadata":
			status, msg = http.StatusInternalServerError, "500 VDI "+v.UUID+" is cbt_metadata: it holds no data"
			return nil
		}
		uuid = v.UUID
		var err error
		cr, err = h.Sim.openChain(v.Chain, v.VirtualSize)
		return err
	})
	switch {
	case err != nil:
		http.Error(w, "500 "+err.Error(), http.StatusInternalServerError)
		return
	case status < 0:
		return
	case status > 0:
		http.Error(w, msg, status)
		return
	}
	defer cr.Close()
	h.streamRaw(w, cr, uuid, q.Get("task_id"))
}

// streamRaw writes the response on the hijacked connection.
func (h *Handler) streamRaw(w http.ResponseWriter, cr *chainReader, uuid, task string) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "500 the connection cannot be taken over", http.StatusInternalServerError)
		return
	}
	conn, bw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/octet-stream\r\n"+
		"Content-Disposition: attachment; filename=\"%s.raw\"\r\n", uuid)
	if task != "" && validRef(task) {
		fmt.Fprintf(bw, "task-id: %s\r\n", task)
	}
	bw.WriteString("\r\n")
	err = copyChain(bw, cr)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		h.logf("xapisim: export_raw_vdi %s: %v", uuid, err)
		h.finishHTTPTask(task, "", []string{errInternal, "export_raw_vdi: " + err.Error()})
		return
	}
	h.finishHTTPTask(task, "", nil)
}

func copyChain(bw *bufio.ReadWriter, cr *chainReader) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < cr.size; {
		n, err := cr.ReadAt(buf[:min(int64(len(buf)), cr.size-off)], off)
		if n == 0 && err != nil {
			return err
		}
		if _, err := bw.Write(buf[:n]); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// serveExportMetadata is GET /export_metadata?uuid=<vm uuid>: a tar
// holding ova.xml, an XML-RPC value of the VM's record and those of its
// VBDs, VDIs and SRs.
func (h *Handler) serveExportMetadata(w http.ResponseWriter, r *http.Request) {
	var body []byte
	status, msg := 0, ""
	err := h.Sim.View(func(st *State) error {
		if _, ok := h.httpSession(w, r, st); !ok {
			status = -1
			return nil
		}
		vmRef := ""
		for ref, vm := range st.VMs {
			if vm.UUID == r.URL.Query().Get("uuid") {
				vmRef = ref
			}
		}
		if vmRef == "" {
			status, msg = http.StatusNotFound, "404 no VM with uuid "+r.URL.Query().Get("uuid")
			return nil
		}
		var err error
		body, err = metadataTar(st.ovaXML(vmRef))
		return err
	})
	switch {
	case err != nil:
		http.Error(w, "500 "+err.Error(), http.StatusInternalServerError)
	case status < 0:
	case status > 0:
		http.Error(w, msg, status)
	default:
		w.Header().Set("Content-Type", "application/x-tar")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = w.Write(body)
	}
}

func metadataTar(ova []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "ova.xml", Mode: 0o644, Size: int64(len(ova)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(ova); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, errors.New("tar: " + err.Error())
	}
	return buf.Bytes(), nil
}

// serveImportRaw is PUT /import_raw_vdi?vdi=&format=raw (or sr_id= to
// make a new VDI sized to the body): the body (with a Content-Length, no
// chunked encoding) is written onto an unplugged VDI from offset 0, as
// tapdisk would, so CBT records it. The state stays locked while it runs.
func (h *Handler) serveImportRaw(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if r.Method != http.MethodPut {
		http.Error(w, "405 import_raw_vdi wants PUT", http.StatusMethodNotAllowed)
		return
	}
	if f := strings.ToLower(q.Get("format")); f != "" && f != "raw" {
		if q.Has("chunked") {
			http.Error(w, "400 the chunked protocol works with format=raw only", http.StatusBadRequest)
			return
		}
		http.Error(w, "501 only format=raw imports are simulated", http.StatusNotImplemented)
		return
	}
	if r.ContentLength < 0 || len(r.TransferEncoding) > 0 {
		http.Error(w, "411 import_raw_vdi needs a Content-Length (chunked transfer encoding is refused)", http.StatusLengthRequired)
		return
	}
	var res importResult
	err := h.Sim.Update(func(st *State) error {
		if _, ok := h.httpSession(w, r, st); !ok {
			res.status = -1
			return nil
		}
		return h.importRaw(st, r, &res)
	})
	// The task is finished before the answer, so a client that polls it
	// after the answer sees the outcome.
	switch {
	case err != nil:
		h.finishHTTPTask(q.Get("task_id"), "", []string{errInternal, err.Error()})
		http.Error(w, "500 "+err.Error(), http.StatusInternalServerError)
	case res.status < 0:
	case res.status > 0:
		code := res.code
		if code == "" {
			code = errInternal
		}
		h.finishHTTPTask(q.Get("task_id"), "", []string{code, res.msg})
		http.Error(w, res.msg, res.status)
	default:
		h.finishHTTPTask(q.Get("task_id"), res.vdi, nil)
		w.WriteHeader(http.StatusOK)
	}
}

// importResult is what importRaw decided: an HTTP refusal (with the
// XenAPI error code the task fails with; INTERNAL_ERROR when empty), or
// the VDI.
type importResult struct {
	status int
	code   string
	msg    string
	vdi    string
}

func (h *Handler) importRaw(st *State, r *http.Request, res *importResult) error {
	q := r.URL.Query()
	ref := st.vdiByRefOrUUID(q.Get("vdi"))
	if q.Get("vdi") == "" && q.Get("sr_id") != "" {
		var err error
		if ref, err = h.Sim.importTarget(st, q.Get("sr_id"), r.ContentLength); err != nil {
			res.status, res.msg = http.StatusBadRequest, "400 "+err.Error()
			return nil
		}
	}
	v := st.VDIs[ref]
	res.vdi = ref
	switch {
	case v == nil:
		res.status, res.msg = http.StatusNotFound, "404 no VDI "+q.Get("vdi")
	case len(v.Chain) == 0 || v.ReadOnly || v.IsSnapshot:
		res.status, res.msg = http.StatusBadRequest, "400 VDI "+v.UUID+" cannot be written (snapshot, read-only or no data)"
	case st.attached(ref, false):
		res.status, res.msg = http.StatusConflict, "409 VDI_IN_USE: VDI "+v.UUID+" is attached; unplug it first"
	case !r.URL.Query().Has("chunked") && r.ContentLength > v.VirtualSize:
		res.status, res.msg = http.StatusBadRequest, fmt.Sprintf("400 the body (%d bytes) is larger than VDI %s (%d bytes)", r.ContentLength, v.UUID, v.VirtualSize)
	case r.URL.Query().Has("chunked"):
		return h.importChunked(v, r, st.takeCountdown(SwitchImportFail), res)
	default:
		return h.Sim.writeStream(v, r.Body, r.ContentLength)
	}
	return nil
}

// importTarget makes the VDI an import by sr_id writes into.
func (s *Sim) importTarget(st *State, srID string, size int64) (string, error) {
	sr := ""
	for ref, x := range st.SRs {
		if ref == srID || x.UUID == srID {
			sr = ref
		}
	}
	if sr == "" || st.SRs[sr].ContentType == "iso" {
		return "", fmt.Errorf("no disk SR %s", srID)
	}
	if size <= 0 || size%512 != 0 {
		return "", fmt.Errorf("a new VDI's size (the Content-Length, %d) must be a positive multiple of 512", size)
	}
	layer, err := s.newLayer(size)
	if err != nil {
		return "", err
	}
	u, ref := newRef()
	st.VDIs[ref] = &VDI{UUID: u, NameLabel: "import", SR: sr, Type: "user", VirtualSize: size,
		OtherConfig: map[string]string{}, Chain: []string{layer}}
	return ref, nil
}
