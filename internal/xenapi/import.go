package xenapi

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// maxPutAnswer caps the body of an import handler's answer (an error page).
const maxPutAnswer = 64 << 10

// ImportRawOptions describes the disk ImportRawVDI uploads.
type ImportRawOptions struct {
	// Size is the VDI's virtual size: every extent must lie inside it.
	Size int64
	// Data lists the extents that hold data, sorted and not overlapping
	// (CheckExtents); only they cross the wire. The rest of the VDI is
	// left as it is: zeros on a new VDI.
	Data []Extent
}

// ImportRawVDI writes a disk onto a VDI with PUT /import_raw_vdi,
// format=raw and xapi's sparse "chunked" protocol: a 12-byte header
// {offset u64, length u32, little-endian} before each chunk of data, and
// {0, 0} at the end. The Content-Length is computed up front from the
// extents; the body is read from src as it is sent. A task made with
// task.create follows the transfer; its error_info is the error when the
// host refuses.
func (s *Session) ImportRawVDI(ctx context.Context, vdi Ref, src io.ReaderAt, opts ImportRawOptions) error {
	const what = "import_raw_vdi"
	if err := checkRef(what, vdi); err != nil {
		return err
	}
	if err := CheckExtents(opts.Data, opts.Size); err != nil {
		return fmt.Errorf("xenapi: %s of VDI %s: %w", what, vdi, err)
	}
	body := &chunkedBody{src: src, data: opts.Data}
	q := url.Values{"vdi": {string(vdi)}, "format": {"raw"}, "chunked": {"true"}}
	res, err := s.putWithTask(ctx, what+" of VDI "+string(vdi), "/import_raw_vdi", q, body, ChunkedLength(opts.Data))
	if err != nil {
		return err
	}
	if got, err := ParseTaskResult(res); err != nil || (got != "" && Ref(got) != vdi) {
		return fmt.Errorf("xenapi: %s of VDI %s: the task's result is not that VDI", what, vdi)
	}
	return nil
}

// MetadataImportOptions are PUT /import_metadata's flags.
type MetadataImportOptions struct {
	// Restore keeps the VM's UUID (a restore over the same pool); false
	// makes a new VM with new UUIDs.
	Restore bool
	// Force imports even when checks fail (xapi's force flag).
	Force bool
	// DryRun checks the import without creating anything.
	DryRun bool
}

// ImportMetadata creates the VM an export_metadata archive describes (PUT
// /import_metadata): vdiMap maps each VDI UUID the metadata names to the
// UUID of the VDI the new VM's VBD gets (the query's vdi:<uuid>=<uuid>).
// It returns the new VMs (none for a dry run).
func (s *Session) ImportMetadata(ctx context.Context, tarball []byte, vdiMap map[string]string, opts MetadataImportOptions) ([]Ref, error) {
	const what = "import_metadata"
	if err := checkTar(tarball); err != nil {
		return nil, fmt.Errorf("xenapi: %s: the metadata archive: %w", what, err)
	}
	q := url.Values{"restore": {strconv.FormatBool(opts.Restore)}, "force": {strconv.FormatBool(opts.Force)},
		"dry_run": {strconv.FormatBool(opts.DryRun)}}
	for from, to := range vdiMap {
		if !ValidUUID(from) || !ValidUUID(to) {
			return nil, fmt.Errorf("xenapi: %s: the VDI map entry %.60q=%.60q is not two VDI UUIDs", what, from, to)
		}
		q.Set("vdi:"+from, to)
	}
	res, err := s.putWithTask(ctx, what, "/import_metadata", q, strings.NewReader(string(tarball)), int64(len(tarball)))
	if err != nil {
		return nil, err
	}
	vms, err := ParseTaskRefs(res)
	if err != nil {
		return nil, fmt.Errorf("xenapi: %s: the task's result: %w", what, err)
	}
	if len(vms) == 0 && !opts.DryRun {
		return nil, fmt.Errorf("xenapi: %s: the host reports success but created no VM", what)
	}
	return vms, nil
}

// putWithTask PUTs length bytes of body to path under a task made with
// task.create, waits for the task and returns its result fragment. The
// task is destroyed afterwards, and cancelled when the transfer fails
// while it is pending.
func (s *Session) putWithTask(ctx context.Context, what, path string, q url.Values, body io.Reader, length int64) (string, error) {
	if s.closed.Load() {
		return "", fmt.Errorf("xenapi: %s: the session is logged out", what)
	}
	task, err := s.callRef(ctx, "task.create", "coffer "+strings.Fields(what)[0], "")
	if err != nil {
		return "", err
	}
	defer s.cleanup(func(c context.Context) { _, _ = s.Call(c, "task.destroy", string(task)) })
	q.Set("session_id", string(s.ref))
	q.Set("task_id", string(task))
	src := &errBody{r: body}
	status, perr := s.put(ctx, what, path+"?"+q.Encode(), src, length)
	if serr := src.failed(); serr != nil && ctx.Err() == nil {
		// Our own source failed: that is the cause, whatever the host did.
		s.cleanup(func(c context.Context) { _, _ = s.Call(c, "task.cancel", string(task)) })
		return "", fmt.Errorf("xenapi: %s: %w", what, serr)
	}
	if perr == nil {
		st, err := s.waitTask(ctx, what, task)
		if err != nil {
			return "", err
		}
		return s.taskOutcome(ctx, what, task, st)
	}
	// The transfer failed: a failed task says why better than HTTP does.
	if ctx.Err() == nil {
		if st, err := s.taskStatus(ctx, task); err == nil && st == "failure" {
			if _, terr := s.taskOutcome(ctx, what, task, st); terr != nil {
				if status == "" {
					return "", terr
				}
				return "", fmt.Errorf("%w (HTTP %s)", terr, status)
			}
		}
	}
	s.cleanup(func(c context.Context) { _, _ = s.Call(c, "task.cancel", string(task)) })
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	return "", perr
}

// put sends one PUT with a fixed Content-Length and returns the status.
func (s *Session) put(ctx context.Context, what, pathQuery string, body io.Reader, length int64) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.ep.base()+pathQuery, io.NopCloser(body))
	if err != nil {
		return "", fmt.Errorf("xenapi: %s: %w", what, s.scrub(err))
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := s.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("xenapi: %s to %s: %w", what, s.ep.host, s.scrub(err))
	}
	defer resp.Body.Close()
	msg, _ := readCapped(resp.Body, maxPutAnswer)
	if resp.StatusCode == http.StatusOK {
		return resp.Status, nil
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return resp.Status, fmt.Errorf("xenapi: %s to %s: HTTP 401: the host refused the session (expired or logged out): log in again", what, s.ep.host)
	case http.StatusForbidden:
		return resp.Status, fmt.Errorf("xenapi: %s to %s: HTTP 403: the user's role does not allow it: use a pool-admin account", what, s.ep.host)
	}
	return resp.Status, fmt.Errorf("xenapi: %s to %s: HTTP %s: %.200s", what, s.ep.host, resp.Status, s.scrub(fmt.Errorf("%s", strings.TrimSpace(string(msg)))))
}

// taskStatus reads a task's status once.
func (s *Session) taskStatus(ctx context.Context, task Ref) (string, error) {
	raw, err := s.Call(ctx, "task.get_status", string(task))
	if err != nil {
		return "", err
	}
	var st string
	if err := unmarshal(raw, &st); err != nil {
		return "", fmt.Errorf("xenapi: task.get_status returned %s, not a status", describe(raw))
	}
	return st, nil
}

// xmlRefSet is an XML-RPC value holding an array of values.
type xmlRefSet struct {
	XMLName xml.Name `xml:"value"`
	Text    string   `xml:",chardata"`
	Array   *struct {
		Values []xmlValue `xml:"data>value"`
	} `xml:"array"`
}

// ParseTaskRefs reads a task result that is a set of references, as xapi
// writes it: "<value><array><data><value>OpaqueRef:…</value>…</data>
// </array></value>"; a single reference (with or without the <value>
// wrapper) is a set of one, "" an empty set.
func ParseTaskRefs(s string) ([]Ref, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return nil, nil
	}
	if !strings.Contains(t, "<array>") {
		one, err := ParseTaskResult(t)
		if err != nil || !validRef(Ref(one)) || Ref(one).IsNull() {
			return nil, fmt.Errorf("%.80q is neither a reference nor a set of references", t)
		}
		return []Ref{Ref(one)}, nil
	}
	var v xmlRefSet
	d := xml.NewDecoder(strings.NewReader(t))
	d.Strict = true
	if err := d.Decode(&v); err != nil || v.Array == nil || strings.TrimSpace(v.Text) != "" {
		return nil, fmt.Errorf("not an XML-RPC array of references")
	}
	if _, err := d.Token(); err == nil {
		return nil, fmt.Errorf("trailing data after the XML-RPC value")
	}
	out := make([]Ref, 0, len(v.Array.Values))
	for i, x := range v.Array.Values {
		r := Ref(strings.TrimSpace(x.Text))
		if x.String != nil {
			r = Ref(x.String.Text)
		}
		if len(x.Others) > 0 || !validRef(r) || r.IsNull() {
			return nil, fmt.Errorf("item %d of the set is not a reference", i)
		}
		out = append(out, r)
	}
	return out, nil
}

// errBody remembers the first error its reader returned other than EOF.
// The transport may still be reading it when Do returns.
type errBody struct {
	r   io.Reader
	mu  sync.Mutex
	err error
}

func (b *errBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *errBody) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}
