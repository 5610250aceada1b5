package xenapi

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
)

const (
	testUser     = "root"
	testPassword = "s3cret-Pa55word"
	testSession  = Ref("OpaqueRef:5e55104e-0000-4000-8000-00000000cafe")
)

// handlerFunc answers one JSON-RPC call: a result, or a XenAPI error
// (code first) when errInfo is not empty.
type handlerFunc func(params []json.RawMessage) (result any, errInfo []string)

// fakeXapi is a canned xapi: JSON-RPC methods by name, plus extra HTTP
// handlers, behind a TLS httptest server.
type fakeXapi struct {
	t   *testing.T
	srv *httptest.Server
	mux *http.ServeMux

	mu      sync.Mutex
	methods map[string]handlerFunc
	calls   []string           // methods in call order
	params  map[string][][]any // params of each call, by method
}

func newFakeXapi(t *testing.T) *fakeXapi {
	t.Helper()
	f := &fakeXapi{t: t, mux: http.NewServeMux(), methods: map[string]handlerFunc{}, params: map[string][][]any{}}
	f.mux.HandleFunc("POST /jsonrpc", f.serveRPC)
	f.srv = httptest.NewUnstartedServer(f.mux)
	f.srv.Config.ErrorLog = quietLog
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	f.handle("session.login_with_password", func(p []json.RawMessage) (any, []string) {
		if len(p) != 4 {
			return nil, []string{ErrParameterCountMismatch, "session.login_with_password", "4", "?"}
		}
		if str(p[0]) != testUser || str(p[1]) != testPassword {
			return nil, []string{ErrAuthFailed}
		}
		return string(testSession), nil
	})
	f.handle("session.logout", func([]json.RawMessage) (any, []string) { return "", nil })
	return f
}

// startFakeOn serves f on a listener the test made (another address).
func (f *fakeXapi) startOn(t *testing.T, l net.Listener) {
	f.srv.Close()
	f.srv = httptest.NewUnstartedServer(f.mux)
	f.srv.Listener.Close()
	f.srv.Listener = l
	f.srv.Config.ErrorLog = quietLog
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
}

// quietLog drops the TLS handshake errors the refusal tests provoke.
var quietLog = log.New(io.Discard, "", 0)

func str(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

func (f *fakeXapi) handle(method string, h handlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.methods[method] = h
}

// result makes method always answer res.
func (f *fakeXapi) result(method string, res any) {
	f.handle(method, func([]json.RawMessage) (any, []string) { return res, nil })
}

func (f *fakeXapi) called(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == method {
			n++
		}
	}
	return n
}

func (f *fakeXapi) paramsOf(method string) [][]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.params[method]
}

func (f *fakeXapi) serveRPC(w http.ResponseWriter, r *http.Request) {
	var req struct {
		JSONRPC string            `json:"jsonrpc"`
		Method  string            `json:"method"`
		Params  []json.RawMessage `json:"params"`
		ID      *int64            `json:"id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.JSONRPC != "2.0" || req.ID == nil {
		http.Error(w, "bad request", http.StatusInternalServerError)
		return
	}
	var plain []any
	for _, p := range req.Params {
		var v any
		_ = json.Unmarshal(p, &v)
		plain = append(plain, v)
	}
	f.mu.Lock()
	f.calls = append(f.calls, req.Method)
	f.params[req.Method] = append(f.params[req.Method], plain)
	h := f.methods[req.Method]
	f.mu.Unlock()
	params := req.Params
	if req.Method != "session.login_with_password" {
		if len(params) == 0 || str(params[0]) != string(testSession) {
			writeRPC(w, *req.ID, nil, []string{ErrSessionInvalid, strOr(params)})
			return
		}
		params = params[1:]
	}
	if h == nil {
		writeRPC(w, *req.ID, nil, []string{ErrMethodUnknown, req.Method})
		return
	}
	res, errInfo := h(params)
	writeRPC(w, *req.ID, res, errInfo)
}

func strOr(p []json.RawMessage) string {
	if len(p) == 0 {
		return ""
	}
	return str(p[0])
}

func writeRPC(w http.ResponseWriter, id int64, res any, errInfo []string) {
	w.Header().Set("Content-Type", "application/json")
	if len(errInfo) > 0 {
		_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": id,
			"error": map[string]any{"code": 1, "message": errInfo[0], "data": errInfo[1:]}})
		return
	}
	if raw, ok := res.(json.RawMessage); ok {
		_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":` + jsonInt(id) + `,"result":` + string(raw) + `}`))
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": id, "result": res})
}

func jsonInt(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// config is a Config for f pinned to its certificate.
func (f *fakeXapi) config() Config {
	return Config{URL: f.srv.URL, User: testUser, Password: testPassword,
		Fingerprint: Fingerprint(f.srv.Certificate()), Clock: clocktest.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))}
}

// login logs in to f and logs out at the end of the test.
func (f *fakeXapi) login(t *testing.T) *Session {
	t.Helper()
	s, err := Login(context.Background(), f.config())
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	return s
}

// newPlainServer serves f's handlers over plain HTTP too, and returns its URL.
func newPlainServer(t *testing.T, f *fakeXapi) string {
	srv := httptest.NewServer(f.mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// newRawServer is a TLS server with the fake's certificate that answers
// every request with serve; it returns its base URL.
func newRawServer(t *testing.T, serve func(w http.ResponseWriter)) string {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serve(w) }))
	srv.Config.ErrorLog = quietLog
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

func xmlEscape(w io.Writer, s string) error { return xml.EscapeText(w, []byte(s)) }
