package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// objectKey is the data-store key of a tenant's object.
func objectKey(tenantID, name string) string { return "repos/" + tenantID + "/" + name }

func (s *Server) handleRepo(w http.ResponseWriter, r *http.Request, name string) {
	switch r.Method {
	case http.MethodPut, http.MethodGet, http.MethodHead, http.MethodDelete:
	default:
		allowMethods(w, r, http.MethodPut, http.MethodGet, http.MethodHead, http.MethodDelete)
		return
	}
	kind, err := vaultapi.ParseRepoName(name)
	if err != nil {
		writeError(w, r, Errorf(http.StatusBadRequest, vaultapi.CodeBadName, "%v", err))
		return
	}
	reqInfoFrom(r.Context()).kind = kind.String()
	p := s.admit(w, r)
	if p == nil {
		return
	}
	key := objectKey(p.TenantID, name)
	if err := store.ValidName(key); err != nil { // in depth: the grammar already guarantees it
		writeError(w, r, Errorf(http.StatusBadRequest, vaultapi.CodeBadName, "%v", err))
		return
	}
	switch r.Method {
	case http.MethodDelete:
		writeError(w, r, Errorf(http.StatusForbidden, vaultapi.CodeAppendOnly, "the vault is append-only: agents cannot delete objects"))
	case http.MethodPut:
		s.putObject(w, r, p, name, kind, key)
	default:
		s.getObject(w, r, p, name, kind, key)
	}
}

// maxSize is the largest object of kind accepted.
func (s *Server) maxSize(k vaultapi.Kind) int64 {
	if k == vaultapi.KindPack {
		return s.lim.MaxObjectSize
	}
	return k.MaxSize()
}

// maxMetaValue bounds agent-reported byte counts (1 PiB).
const maxMetaValue = 1 << 50

func parseMeta(r *http.Request, kind vaultapi.Kind) (ObjectMeta, error) {
	var m ObjectMeta
	if kind != vaultapi.KindSnapshot {
		return m, nil
	}
	for _, f := range []struct {
		h string
		v *int64
	}{{vaultapi.HeaderLogicalBytes, &m.LogicalBytes}, {vaultapi.HeaderDataBytes, &m.DataBytes}} {
		vals := r.Header.Values(f.h)
		if len(vals) == 0 {
			continue
		}
		n, err := strconv.ParseInt(vals[0], 10, 64)
		if len(vals) > 1 || err != nil || n < 0 || n > maxMetaValue {
			return m, fmt.Errorf("header %s must be one integer in 0..%d", f.h, int64(maxMetaValue))
		}
		*f.v = n
	}
	return m, nil
}

func (s *Server) putObject(w http.ResponseWriter, r *http.Request, p *Principal, name string, kind vaultapi.Kind, key string) {
	ctx := r.Context()
	info := reqInfoFrom(ctx)
	if len(r.TransferEncoding) > 0 || r.Header.Get("Content-Length") == "" || r.ContentLength < 0 {
		writeError(w, r, Errorf(http.StatusLengthRequired, vaultapi.CodeLengthRequired, "uploads need a Content-Length header (no chunked encoding)"))
		return
	}
	size := r.ContentLength
	if lim := s.maxSize(kind); size > lim {
		writeError(w, r, Errorf(http.StatusRequestEntityTooLarge, vaultapi.CodeTooLarge, "%s of %d bytes is over the limit for a %s (%d bytes)", name, size, kind, lim))
		return
	}
	meta, err := parseMeta(r, kind)
	if err != nil {
		writeError(w, r, Errorf(http.StatusBadRequest, vaultapi.CodeBadRequest, "%v", err))
		return
	}
	var want []byte
	if kind.ContentNamed() {
		want, _ = hex.DecodeString(name[len(name)-64:])
		if size == 0 {
			if sum := sha256.Sum256(nil); hex.EncodeToString(sum[:]) != name[len(name)-64:] {
				s.digestMismatch(w, r, p, name)
				return
			}
		}
	}

	// Fairness: the tenant's upload slots, then the replica's.
	tl := s.limits.tenant(p.TenantID)
	if !acquire(ctx, tl.up, s.lim.SlotWait) {
		s.m.throttled.WithLabelValues(p.TenantID, "uploads").Inc()
		writeError(w, r, &Error{Status: http.StatusTooManyRequests, Code: vaultapi.CodeTooManyUploads,
			Message:    fmt.Sprintf("tenant %s: %d uploads already in flight (limit %d)", p.TenantName, s.lim.TenantUploads, s.lim.TenantUploads),
			RetryAfter: jitterRetry()})
		return
	}
	defer release(tl.up)
	if !acquire(ctx, s.limits.global, s.lim.SlotWait) {
		s.m.throttled.WithLabelValues(p.TenantID, "global").Inc()
		writeError(w, r, &Error{Status: http.StatusServiceUnavailable, Code: vaultapi.CodeBusy,
			Message: "the vault is busy with other uploads; retry later", RetryAfter: jitterRetry()})
		return
	}
	defer release(s.limits.global)

	if !s.absent(w, r, key, name) {
		return
	}
	if kind == vaultapi.KindKey {
		if err := s.checkKeySlots(ctx, p.TenantID); err != nil {
			writeError(w, r, s.apiError(r, err))
			return
		}
	}
	ttl := 5 * time.Minute
	if s.lim.MinUploadRate > 0 {
		ttl += time.Duration(float64(size)/float64(s.lim.MinUploadRate)) * time.Second
	} else {
		ttl += time.Duration(size/(32<<10)) * time.Second
	}
	var res Reservation
	if s.ledger != nil {
		res, err = s.ledger.Reserve(ctx, p, name, kind, size, meta, ttl)
		switch {
		case errors.Is(err, store.ErrNoSpace):
			s.m.quotaRefusals.WithLabelValues(p.TenantID).Inc()
			writeError(w, r, Errorf(http.StatusInsufficientStorage, vaultapi.CodeQuotaExceeded, "%v", err))
			return
		case errors.Is(err, ErrBusy):
			writeError(w, r, &Error{Status: http.StatusServiceUnavailable, Code: vaultapi.CodeUploadInProgress,
				Message: fmt.Sprintf("another upload of %s is in progress", name), RetryAfter: 2 * time.Second})
			return
		case err != nil:
			writeError(w, r, s.apiError(r, err))
			return
		}
	}
	settled := false
	settle := func(commit bool) {
		if res == nil || settled {
			return
		}
		settled = true
		// Settle even if the client is gone.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		var err error
		if commit {
			err = res.Commit(sctx)
		} else {
			err = res.Release(sctx)
		}
		if err != nil {
			s.log.Warn("settling a reservation failed; it expires and is settled later", "req_id", info.id, "commit", commit, "err", err)
		}
	}
	defer settle(false)
	if res != nil && !s.absent(w, r, key, name) {
		return
	}

	vr := newVerifyReader(r.Body, size, want)
	vr.progress = func(n int) { info.bytesIn.Add(int64(n)) }
	vr.recheck(s.now, s.lim.UploadRecheck, func() error { return s.stillAuthorized(r) })
	rc := http.NewResponseController(w)
	vr.startDeadlines(rc, s.now, s.lim.MinUploadRate, s.lim.RateWindow)
	putCtx, cancel := context.WithDeadline(ctx, s.now().Add(ttl-time.Minute))
	defer cancel()
	g := s.m.uploadsInFlight.WithLabelValues(p.TenantID)
	g.Inc()
	var src io.ReaderAt = &seqReaderAt{r: vr, size: size}
	if kind == vaultapi.KindReceipt {
		// A receipt is read whole and checked before it is stored.
		body, rerr := io.ReadAll(vr)
		if rerr != nil {
			g.Dec()
			settle(false)
			s.uploadFailed(w, r, p, name, vr, rerr)
			return
		}
		if e := s.acceptReceipt(putCtx, r, p, body); e != nil {
			g.Dec()
			writeError(w, r, e)
			return
		}
		src = store.Bytes(body)
	}
	err = s.data.Put(putCtx, key, src, size)
	g.Dec()
	if err == nil {
		settle(true)
		if want != nil {
			w.Header().Set("ETag", `"`+name[len(name)-64:]+`"`)
		}
		writeJSON(w, r, http.StatusCreated, vaultapi.ObjectInfo{Name: name, Size: size})
		return
	}
	settle(false)
	s.uploadFailed(w, r, p, name, vr, err)
}

// uploadFailed answers an upload whose Put failed; vr tells why.
func (s *Server) uploadFailed(w http.ResponseWriter, r *http.Request, p *Principal, name string, vr *verifyReader, err error) {
	var revoked *refusedMidUpload
	if vr.n < vr.size {
		// The rest of the body is unread: close instead of draining it.
		w.Header().Set("Connection", "close")
	}
	switch {
	case errors.Is(err, store.ErrExists):
		writeError(w, r, Errorf(http.StatusConflict, vaultapi.CodeExists, "%s already exists", name))
	case vr.err == errDigestMismatch:
		s.digestMismatch(w, r, p, name)
	case errors.As(vr.err, &revoked):
		e := *revoked.e
		e.Message += fmt.Sprintf("; the upload of %s was stopped and nothing was stored", name)
		writeError(w, r, &e)
	case vr.err != nil && isTimeout(vr.err):
		writeError(w, r, Errorf(http.StatusRequestTimeout, vaultapi.CodeTooSlow,
			"upload of %s too slow: under %d bytes/s over %s; nothing was stored", name, s.lim.MinUploadRate, s.lim.RateWindow))
	case vr.err != nil:
		s.log.Info("upload truncated", "req_id", reqInfoFrom(r.Context()).id, "tenant", p.TenantID, "got", vr.n, "want", vr.size)
		writeError(w, r, Errorf(http.StatusBadRequest, vaultapi.CodeTruncated,
			"upload of %s ended after %d of %d bytes; nothing was stored", name, vr.n, vr.size))
	case errors.Is(err, store.ErrNoSpace):
		writeError(w, r, Errorf(http.StatusInsufficientStorage, vaultapi.CodeStoreFull, "the vault's store is full; nothing was stored"))
	default:
		writeError(w, r, s.apiError(r, err))
	}
}

// refusedMidUpload ends an upload whose credential was revoked, or whose
// tenant was suspended, while it streamed.
type refusedMidUpload struct{ e *Error }

func (r *refusedMidUpload) Error() string { return r.e.Error() }

// stillAuthorized checks the request's credential again (through the
// authentication cache) while its upload streams. Only a refusal stops the
// upload: a store that cannot answer now does not.
func (s *Server) stillAuthorized(r *http.Request) error {
	bearer, e := bearerOf(r)
	if e != nil {
		return &refusedMidUpload{e}
	}
	p, err := s.checkCredential(r.Context(), bearer)
	if err != nil {
		if e := s.apiError(r, err); e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
			return &refusedMidUpload{e}
		}
		return nil
	}
	if e := suspendedError(p); e != nil {
		return &refusedMidUpload{e}
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func (s *Server) digestMismatch(w http.ResponseWriter, r *http.Request, p *Principal, name string) {
	s.m.digestMismatch.WithLabelValues(p.TenantID).Inc()
	writeError(w, r, Errorf(http.StatusBadRequest, vaultapi.CodeDigestMismatch, "bytes do not match their name %s; nothing was stored", name))
}

// absent answers 409 and returns false when key exists.
func (s *Server) absent(w http.ResponseWriter, r *http.Request, key, name string) bool {
	_, err := s.data.Stat(r.Context(), key)
	switch {
	case err == nil:
		writeError(w, r, Errorf(http.StatusConflict, vaultapi.CodeExists, "%s already exists", name))
		return false
	case errors.Is(err, store.ErrNotFound):
		return true
	default:
		writeError(w, r, s.apiError(r, err))
		return false
	}
}

// copyBufs are the buffers of downloads. At 256 KiB one read from the
// store's connection drains several of its segments at once; with
// TenantDownloads in flight per tenant they stay a few MiB.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// sizeCacheEntries bounds the object-size cache (about 100 bytes an entry).
const sizeCacheEntries = 16384

// objectInfo returns the size and time of the object under key. A
// content-named object is named by the SHA-256 of its bytes, which the vault
// checked when it was stored, so neither changes while it exists: a GET takes it
// from a cache and skips the store round trip that a restore's several
// range reads of one pack would otherwise each pay. If the object was
// deleted since, the GET itself finds it gone and answers 404. A HEAD is
// asked whether the object exists, so it always asks the store.
func (s *Server) objectInfo(ctx context.Context, method string, kind vaultapi.Kind, key string) (store.Info, error) {
	cacheable := kind.ContentNamed() && method == http.MethodGet
	if cacheable {
		if fi, ok := s.sizes.Get(key); ok {
			return fi, nil
		}
	}
	st, err := s.data.Stat(ctx, key)
	if err != nil {
		return store.Info{}, err
	}
	if kind.ContentNamed() {
		s.sizes.Add(key, st)
	}
	return st, nil
}

// parseRange parses a single "bytes=a-b" or "bytes=a-" range against size.
// ok=false with unsatisfiable=true means 416 with Content-Range */size.
func parseRange(h string, size int64) (off, length int64, err *Error) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	bad := Errorf(http.StatusRequestedRangeNotSatisfiable, vaultapi.CodeInvalidRange, "unsupported Range %q: send one range bytes=first-last or bytes=first-", clipString(h))
	if !ok || strings.ContainsAny(spec, ", ") {
		return 0, 0, bad
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok || a == "" {
		return 0, 0, bad
	}
	first, e1 := strconv.ParseInt(a, 10, 64)
	if e1 != nil || first < 0 {
		return 0, 0, bad
	}
	last := size - 1
	if b != "" {
		l, e2 := strconv.ParseInt(b, 10, 64)
		if e2 != nil || l < 0 {
			return 0, 0, bad
		}
		if l < first {
			return 0, 0, Errorf(http.StatusRequestedRangeNotSatisfiable, vaultapi.CodeInvalidRange, "range %s ends before it starts", clipString(h))
		}
		last = min(l, size-1)
	}
	if first >= size {
		return 0, 0, Errorf(http.StatusRequestedRangeNotSatisfiable, vaultapi.CodeInvalidRange, "range starts at %d, past the object's %d bytes", first, size)
	}
	return first, last - first + 1, nil
}

func clipString(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func (s *Server) getObject(w http.ResponseWriter, r *http.Request, p *Principal, name string, kind vaultapi.Kind, key string) {
	ctx := r.Context()
	info := reqInfoFrom(ctx)
	tl := s.limits.tenant(p.TenantID)
	if !acquire(ctx, tl.down, s.lim.SlotWait) {
		s.m.throttled.WithLabelValues(p.TenantID, "downloads").Inc()
		writeError(w, r, &Error{Status: http.StatusTooManyRequests, Code: vaultapi.CodeTooManyDownloads,
			Message:    fmt.Sprintf("tenant %s: %d downloads already in flight (limit %d)", p.TenantName, s.lim.TenantDownloads, s.lim.TenantDownloads),
			RetryAfter: jitterRetry()})
		return
	}
	defer release(tl.down)
	fi, err := s.objectInfo(ctx, r.Method, kind, key)
	size := fi.Size
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, r, s.notFound(ctx, r, p, name, kind))
		return
	}
	if err != nil {
		writeError(w, r, s.apiError(r, err))
		return
	}
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	if kind.ContentNamed() {
		h.Set("ETag", `"`+name[len(name)-64:]+`"`)
	}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if !fi.ModTime.IsZero() {
		h.Set("Last-Modified", fi.ModTime.UTC().Format(http.TimeFormat))
	}
	if r.Method == http.MethodHead {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	off, length, status := int64(0), size, http.StatusOK
	if rh := r.Header.Values("Range"); len(rh) > 0 {
		var e *Error
		if len(rh) > 1 {
			e = Errorf(http.StatusRequestedRangeNotSatisfiable, vaultapi.CodeInvalidRange, "more than one Range header")
		} else {
			off, length, e = parseRange(rh[0], size)
		}
		if e != nil {
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			writeError(w, r, e)
			return
		}
		status = http.StatusPartialContent
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+length-1, size))
	}
	if s.redirectDirect(ctx, w, r, p, kind, key, length) {
		return
	}
	h.Set("Content-Length", strconv.FormatInt(length, 10))
	if length == 0 {
		w.WriteHeader(status)
		return
	}
	rc := http.NewResponseController(w)
	started := false
	err = s.data.Get(ctx, key, off, length, func(src io.Reader) error {
		if started {
			return errors.New("store retried a download after bytes were sent")
		}
		bp := copyBufs.Get().(*[]byte)
		defer copyBufs.Put(bp)
		buf := *bp
		var sent int64
		for sent < length {
			n, rerr := src.Read(buf[:min(int64(len(buf)), length-sent)])
			if n > 0 {
				if !started {
					started = true
					w.WriteHeader(status)
				}
				_ = rc.SetWriteDeadline(s.now().Add(s.lim.RateWindow))
				m, werr := w.Write(buf[:n])
				sent += int64(m)
				info.bytesOut.Add(int64(m))
				if werr != nil {
					return werr
				}
			}
			if rerr == io.EOF {
				if sent < length {
					return io.ErrUnexpectedEOF
				}
				break
			}
			if rerr != nil {
				return rerr
			}
		}
		return nil
	})
	if err == nil {
		return
	}
	if started {
		// The status line is out: abort the connection so the client sees a
		// short body, never a complete-looking wrong one.
		s.log.Warn("download failed after the first byte", "req_id", info.id, "err", err)
		panic(http.ErrAbortHandler)
	}
	h.Del("Content-Range")
	if errors.Is(err, store.ErrNotFound) {
		s.sizes.Remove(key)
		writeError(w, r, s.notFound(ctx, r, p, name, kind))
		return
	}
	writeError(w, r, s.apiError(r, err))
}

// notFound answers a read of an object the vault does not hold: 404, or
// 409 seed_pending for a pack that travels on a seed in transit.
func (s *Server) notFound(ctx context.Context, r *http.Request, p *Principal, name string, kind vaultapi.Kind) *Error {
	if kind == vaultapi.KindPack {
		return s.pendingPack(ctx, r, p, name)
	}
	return Errorf(http.StatusNotFound, vaultapi.CodeNotFound, "no object %s", name)
}
