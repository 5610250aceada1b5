package vault

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// reqInfo is what one request leaves for its access log line and metrics.
type reqInfo struct {
	id       string
	route    string
	kind     string
	tenant   string
	code     string
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
}

type ctxKey struct{}

func reqInfoFrom(ctx context.Context) *reqInfo {
	i, _ := ctx.Value(ctxKey{}).(*reqInfo)
	return i
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter records the status. Unwrap keeps http.ResponseController
// (deadlines, flush) working through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// routeOf maps a sanitised path to a bounded metrics label.
func routeOf(path string) string {
	switch {
	case len(path) > len(vaultapi.RouteRepo) && path[:len(vaultapi.RouteRepo)] == vaultapi.RouteRepo:
		return "repo"
	case path == vaultapi.RouteList:
		return "list"
	case path == vaultapi.RouteEnroll:
		return "enroll"
	case path == vaultapi.RouteTenant:
		return "tenant"
	case path == vaultapi.RouteEscrow:
		return "escrow"
	case path == vaultapi.RouteEscrowSlot:
		return "escrow_slot"
	case path == vaultapi.RouteHealthz:
		return "healthz"
	case path == vaultapi.RouteSigningKey:
		return "signing_key"
	case path == vaultapi.RouteSeeds || strings.HasPrefix(path, vaultapi.RouteSeeds+"/"):
		return "seeds"
	}
	return "other"
}

// outer is the outermost handler: request id, panic recovery, the raw path
// sanitiser, then the router; on the way out the access log line and the
// metrics. It never logs headers, query strings or bodies.
func (s *Server) outer(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	info := &reqInfo{id: newRequestID(), route: "other"}
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, info))
	sw := &statusWriter{ResponseWriter: w}
	sw.Header().Set(vaultapi.HeaderRequestID, info.id)
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				info.code = "aborted"
				s.finish(r, sw, info, start)
				panic(p)
			}
			s.log.Error("handler panic", "req_id", info.id, "route", info.route, "panic", p)
			if sw.status == 0 {
				writeError(sw, r, Errorf(http.StatusInternalServerError, vaultapi.CodeInternal, "internal error; the request id is in the server log"))
			}
		}
		s.finish(r, sw, info, start)
	}()
	path, query, err := sanitizePath(r.RequestURI)
	if err == errURITooLong {
		writeError(sw, r, Errorf(http.StatusRequestURITooLong, vaultapi.CodeURITooLong, "request target longer than %d bytes", maxURILen))
		return
	}
	if err != nil {
		writeError(sw, r, Errorf(http.StatusBadRequest, vaultapi.CodeBadPath, "malformed request path: %v", err))
		return
	}
	info.route = routeOf(path)
	s.armBodyDeadline(sw, r)
	s.route(sw, r, path, query)
}

func (s *Server) finish(r *http.Request, sw *statusWriter, info *reqInfo, start time.Time) {
	dur := s.now().Sub(start)
	status := sw.status
	if status == 0 {
		status = http.StatusOK
	}
	code := strconv.Itoa(status)
	s.m.requests.WithLabelValues(info.route, methodLabel(r.Method), code).Inc()
	s.m.duration.WithLabelValues(info.route).Observe(dur.Seconds())
	if info.tenant != "" {
		s.m.tenantRequests.WithLabelValues(info.tenant, info.route, code).Inc()
		if n := info.bytesIn.Load(); n > 0 {
			s.m.bytesIn.WithLabelValues(info.tenant).Add(float64(n))
		}
		if n := info.bytesOut.Load(); n > 0 {
			s.m.bytesOut.WithLabelValues(info.tenant).Add(float64(n))
		}
		if status >= 400 && info.code != "" {
			s.m.tenantErrors.WithLabelValues(info.tenant, info.code).Inc()
		}
	}
	remote, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		remote = r.RemoteAddr
	}
	s.log.Info("request",
		"req_id", info.id, "remote", remote, "method", methodLabel(r.Method), "route", info.route,
		"kind", info.kind, "tenant", info.tenant, "status", status, "code", info.code,
		"bytes_in", info.bytesIn.Load(), "bytes_out", info.bytesOut.Load(),
		"dur_ms", float64(dur.Microseconds())/1000)
}

// methodLabel bounds the method label to the methods HTTP defines.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete,
		http.MethodPatch, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}
