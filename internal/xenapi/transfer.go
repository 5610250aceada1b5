package xenapi

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// errorPagePrefix starts the HTTP error page xapi sometimes nests inside a
// 200 body.
var errorPagePrefix = []byte("HTTP/")

// get starts a GET of path on the session's host with the session in the
// query, following one redirect, and checks the status.
func (s *Session) get(ctx context.Context, what, path string, q url.Values) (*http.Response, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("xenapi: %s: the session is logged out", what)
	}
	q.Set("session_id", string(s.ref))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.ep.base()+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("xenapi: %s: %w", what, s.scrub(err))
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("xenapi: %s from %s: %w", what, s.ep.host, s.scrub(err))
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	resp.Body.Close()
	host := resp.Request.URL.Hostname()
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return nil, fmt.Errorf("xenapi: %s from %s: HTTP 401: the host refused the session (expired or logged out): log in again", what, host)
	case http.StatusForbidden:
		return nil, fmt.Errorf("xenapi: %s from %s: HTTP 403: the user's role does not allow it: use a pool-admin (or VM-admin) account", what, host)
	case http.StatusNotFound:
		return nil, fmt.Errorf("xenapi: %s from %s: HTTP 404: the object or the format is unknown to the host", what, host)
	}
	return nil, fmt.Errorf("xenapi: %s from %s: HTTP %s", what, host, resp.Status)
}

// ExportMetadata downloads a VM's metadata export (GET /export_metadata):
// a tar holding ova.xml. It refuses a body over limit bytes, a body shorter
// than its Content-Length, a body that is not a tar, and an HTTP error page
// inside a 200 body.
func (s *Session) ExportMetadata(ctx context.Context, vmUUID string, limit int64) ([]byte, error) {
	const what = "export_metadata"
	if !ValidUUID(vmUUID) {
		return nil, fmt.Errorf("xenapi: %s: %.60q is not a VM UUID (8-4-4-4-12 hex digits)", what, vmUUID)
	}
	if limit <= 0 {
		return nil, fmt.Errorf("xenapi: %s: the size limit must be positive, not %d", what, limit)
	}
	resp, err := s.get(ctx, what, "/export_metadata", url.Values{"uuid": {vmUUID}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("xenapi: %s of VM %s: the host announces %d bytes, more than the limit of %d", what, vmUUID, resp.ContentLength, limit)
	}
	body, err := readCapped(resp.Body, limit)
	if err != nil {
		return nil, fmt.Errorf("xenapi: %s of VM %s: %w", what, vmUUID, s.scrub(err))
	}
	if resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength {
		return nil, fmt.Errorf("xenapi: %s of VM %s: the body has %d bytes, the host announced %d: %w", what, vmUUID, len(body), resp.ContentLength, io.ErrUnexpectedEOF)
	}
	if err := checkTar(body); err != nil {
		return nil, fmt.Errorf("xenapi: %s of VM %s: %w", what, vmUUID, err)
	}
	return body, nil
}

// checkTar refuses an error page and anything whose first entry is not a
// well-formed tar header.
func checkTar(body []byte) error {
	if bytes.HasPrefix(body, errorPagePrefix) {
		return errors.New("the host sent an HTTP error page inside a 200 answer")
	}
	if _, err := tar.NewReader(bytes.NewReader(body)).Next(); err != nil {
		return fmt.Errorf("the body is not a tar archive: %v", err)
	}
	return nil
}

// ExportRawVDI streams a VDI's raw contents (GET /export_raw_vdi,
// format=raw). xapi ends the body by closing the connection, so the reader
// checks the length itself: it returns an error wrapping
// io.ErrUnexpectedEOF when the stream ends or breaks before size bytes (a
// broken stream's error wraps its cause too), and an error
// when it carries more than size bytes; io.EOF only after exactly size.
// A body starting with an HTTP error page is refused.
func (s *Session) ExportRawVDI(ctx context.Context, vdi Ref, size int64) (io.ReadCloser, error) {
	const what = "export_raw_vdi"
	if err := checkRef(what, vdi); err != nil {
		return nil, err
	}
	if size < 0 {
		return nil, fmt.Errorf("xenapi: %s: negative disk size %d", what, size)
	}
	resp, err := s.get(ctx, what, "/export_raw_vdi", url.Values{"vdi": {string(vdi)}, "format": {"raw"}})
	if err != nil {
		return nil, err
	}
	if resp.ContentLength >= 0 && resp.ContentLength != size {
		resp.Body.Close()
		return nil, fmt.Errorf("xenapi: %s: the host announces %d bytes for a disk of %d", what, resp.ContentLength, size)
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	head, err := br.Peek(len(errorPagePrefix))
	if err != nil && !errors.Is(err, io.EOF) {
		resp.Body.Close()
		return nil, fmt.Errorf("xenapi: %s: %w", what, s.scrub(err))
	}
	if bytes.Equal(head, errorPagePrefix) {
		resp.Body.Close()
		return nil, fmt.Errorf("xenapi: %s: the host sent an HTTP error page inside a 200 answer: retry, or check the host's logs", what)
	}
	return &sizedReader{r: br, c: resp.Body, size: size, scrub: s.scrub}, nil
}

// sizedReader reads a stream that must hold exactly size bytes.
type sizedReader struct {
	r     io.Reader
	c     io.Closer
	size  int64
	n     int64
	scrub func(error) error
}

func (z *sizedReader) Read(p []byte) (int, error) {
	if z.n == z.size {
		// Exactly size bytes so far: the stream must end here.
		var one [1]byte
		k, err := io.ReadFull(z.r, one[:])
		if k > 0 {
			return 0, fmt.Errorf("xenapi: export_raw_vdi: the host sent more than the disk's %d bytes", z.size)
		}
		if errors.Is(err, io.EOF) {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("xenapi: export_raw_vdi: at the end of the disk: %w", z.scrub(err))
	}
	if int64(len(p)) > z.size-z.n {
		p = p[:z.size-z.n]
	}
	k, err := z.r.Read(p)
	z.n += int64(k)
	if errors.Is(err, io.EOF) {
		if z.n < z.size {
			return k, fmt.Errorf("xenapi: export_raw_vdi: the stream ended after %d of %d bytes: %w", z.n, z.size, io.ErrUnexpectedEOF)
		}
		err = nil
	} else if err != nil {
		err = fmt.Errorf("xenapi: export_raw_vdi: the stream broke after %d of %d bytes: %w (%w)", z.n, z.size, z.scrub(err), io.ErrUnexpectedEOF)
	}
	return k, err
}

func (z *sizedReader) Close() error { return z.c.Close() }
