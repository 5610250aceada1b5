package vault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// lockedBuffer collects log output from concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type fixture struct {
	t      *testing.T
	data   store.Store
	auth   *fakeAuth
	ledger *fakeLedger
	srv    *Server
	h      http.Handler
	logs   *lockedBuffer

	credA, credB, credS vaultapi.Secret
	idA, idB            string
	// B's objects
	packB, snapB string
	// A's objects
	packA, keyA string
	packABytes  []byte
}

const (
	tenantA = "aaaaaaaaaaaaaaaaaaaaaaaa"
	tenantB = "bbbbbbbbbbbbbbbbbbbbbbbb"
	tenantS = "cccccccccccccccccccccccc"
)

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func newFixture(t *testing.T, lim Limits) *fixture {
	t.Helper()
	data, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, data: data, logs: &lockedBuffer{},
		auth:   &fakeAuth{creds: map[string]*Principal{}, revoked: map[string]bool{}},
		ledger: &fakeLedger{quota: map[string]int64{}, stored: map[string]int64{}, active: map[string]int64{}},
	}
	f.credA, f.idA = f.auth.add(Principal{TenantID: tenantA, TenantName: "acme"})
	f.credB, f.idB = f.auth.add(Principal{TenantID: tenantB, TenantName: "bravo"})
	f.credS, _ = f.auth.add(Principal{TenantID: tenantS, TenantName: "sleepy"})
	f.auth.suspend(tenantS, true)
	f.srv, err = New(Config{Data: data, Auth: f.auth, Ledger: f.ledger, Limits: lim,
		Log: slog.New(slog.NewJSONHandler(f.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.h = f.srv.Handler()
	// Populate A and B through the API.
	pb := randBytes(5000)
	f.packB = packName(pb)
	f.mustPut(f.credB, f.packB, pb)
	sb := randBytes(300)
	f.snapB = "snapshots/" + sha(sb)
	f.mustPut(f.credB, f.snapB, sb)
	f.mustPut(f.credB, "config", []byte(`{"b":1}`))
	f.packABytes = randBytes(4000)
	f.packA = packName(f.packABytes)
	f.mustPut(f.credA, f.packA, f.packABytes)
	kb := randBytes(200)
	f.keyA = "keys/" + sha(kb)
	f.mustPut(f.credA, f.keyA, kb)
	f.mustPut(f.credA, "config", []byte(`{"a":1}`))
	return f
}

// req builds a request whose RequestURI is exactly target, as a server
// would receive it.
type req struct {
	method, target string
	cred           vaultapi.Secret
	body           []byte
	noLength       bool // chunked: no Content-Length
	header         map[string][]string
	remote         string // RemoteAddr; default 192.0.2.7:5555
}

func (f *fixture) do(q req) *httptest.ResponseRecorder {
	f.t.Helper()
	r := &http.Request{Method: q.method, RequestURI: q.target, Header: http.Header{}, Proto: "HTTP/1.1",
		ProtoMajor: 1, ProtoMinor: 1, Host: "vault", RemoteAddr: "192.0.2.7:5555", Body: http.NoBody}
	if u, err := url.ParseRequestURI(q.target); err == nil {
		r.URL = u
	} else {
		r.URL = &url.URL{Path: "/"}
	}
	if q.remote != "" {
		r.RemoteAddr = q.remote
	}
	if q.cred != "" {
		r.Header.Set("Authorization", "Bearer "+q.cred.Reveal())
	}
	for k, v := range q.header {
		r.Header[k] = v
	}
	if q.body != nil || q.method == http.MethodPut {
		r.Body = io.NopCloser(bytes.NewReader(q.body))
		if q.noLength {
			r.ContentLength = -1
			r.TransferEncoding = []string{"chunked"}
		} else {
			r.ContentLength = int64(len(q.body))
			r.Header.Set("Content-Length", strconv.Itoa(len(q.body)))
		}
	}
	r = r.WithContext(context.Background())
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

func (f *fixture) mustPut(cred vaultapi.Secret, name string, b []byte) {
	f.t.Helper()
	w := f.do(req{method: "PUT", target: "/v1/repo/" + name, cred: cred, body: b})
	if w.Code != http.StatusCreated {
		f.t.Fatalf("PUT %s: %d %s", name, w.Code, w.Body.String())
	}
}

func errorOf(t *testing.T, w *httptest.ResponseRecorder) vaultapi.ErrorDetail {
	t.Helper()
	if w.Code < 400 {
		return vaultapi.ErrorDetail{}
	}
	var eb vaultapi.ErrorBody
	if w.Body.Len() == 0 {
		return vaultapi.ErrorDetail{}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil {
		t.Fatalf("error body is not JSON: %q", w.Body.String())
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	if w.Header().Get("X-Content-Type-Options") != "nosniff" || w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("error headers missing: %v", w.Header())
	}
	if eb.Error.RequestID == "" {
		t.Errorf("error body without request id: %s", w.Body.String())
	}
	return eb.Error
}

func TestSecurityTable(t *testing.T) {
	lim := DefaultLimits()
	lim.AuthCacheTTL = 0
	f := newFixture(t, lim)
	f.ledger.quota[tenantA] = 1 << 20 // 1 MiB; A uses a few KiB
	longName := "data/ab/" + strings.Repeat("a", 600)
	newKeyBytes := randBytes(100)
	otherPack := randBytes(3000)
	bigPack := randBytes(2 << 20)
	credBadSecret := vaultapi.Secret(f.credA.Reveal()[:len(f.credA.Reveal())-4] + "AAAA")
	unknownID, _, _, _ := vaultapi.NewCredential()
	newA := randBytes(1000)

	cases := []struct {
		id      string
		q       req
		status  int
		code    string
		msg     string
		changes func() string // expected new snapshot line prefix ("" = store unchanged)
		check   func(t *testing.T, w *httptest.ResponseRecorder)
	}{
		{id: "1 read B's pack by name", q: req{method: "GET", target: "/v1/repo/" + f.packB, cred: f.credA}, status: 404, code: "not_found", msg: "no object"},
		{id: "2 dot-dot raw", q: req{method: "GET", target: "/v1/repo/../../repos/" + tenantB + "/config", cred: f.credA}, status: 400, code: "bad_path", msg: "malformed request path"},
		{id: "3 %2e%2e", q: req{method: "GET", target: "/v1/repo/%2e%2e/%2e%2e/repos/" + tenantB + "/config", cred: f.credA}, status: 400, code: "bad_path", msg: "percent-encoding"},
		{id: "4 double encoding", q: req{method: "GET", target: "/v1/repo/%252e%252e/repos/" + tenantB + "/config", cred: f.credA}, status: 400, code: "bad_path", msg: "percent-encoding"},
		{id: "5a leading //", q: req{method: "GET", target: "//repos/" + tenantB + "/config", cred: f.credA}, status: 400, code: "bad_path", msg: "empty path segment"},
		{id: "5b empty segment", q: req{method: "GET", target: "/v1/repo//etc/passwd", cred: f.credA}, status: 400, code: "bad_path", msg: "empty path segment"},
		{id: "6 absolute form", q: req{method: "GET", target: "http://vault/v1/repo/../x", cred: f.credA}, status: 400, code: "bad_path", msg: "origin form"},
		{id: "6b asterisk form", q: req{method: "OPTIONS", target: "*", cred: f.credA}, status: 400, code: "bad_path", msg: "origin form"},
		{id: "7a backslashes", q: req{method: "GET", target: `/v1/repo/..\..\repos\` + tenantB + `\config`, cred: f.credA}, status: 400, code: "bad_path", msg: "0x5c"},
		{id: "7b %5c", q: req{method: "GET", target: "/v1/repo/..%5c..%5crepos%5cx", cred: f.credA}, status: 400, code: "bad_path", msg: "percent"},
		{id: "8a fullwidth d", q: req{method: "GET", target: "/v1/repo/\uff44ata/ab/" + strings.Repeat("a", 64), cred: f.credA}, status: 400, code: "bad_path", msg: "not allowed"},
		{id: "8b one-dot leader", q: req{method: "GET", target: "/v1/repo/\u2024\u2024/repos/x", cred: f.credA}, status: 400, code: "bad_path", msg: "not allowed"},
		{id: "8c NUL", q: req{method: "GET", target: "/v1/repo/config\x00", cred: f.credA}, status: 400, code: "bad_path", msg: "0x00"},
		{id: "9a 600-byte name", q: req{method: "GET", target: "/v1/repo/" + longName, cred: f.credA}, status: 400, code: "bad_path", msg: "longer than"},
		{id: "9b 20 KiB URI", q: req{method: "GET", target: "/v1/list?prefix=" + strings.Repeat("a", 20<<10), cred: f.credA}, status: 414, code: "uri_too_long", msg: "longer than"},
		{id: "10a list ../B", q: req{method: "GET", target: "/v1/list?prefix=../" + tenantB + "/", cred: f.credA}, status: 400, code: "bad_prefix", msg: "not allowed"},
		{id: "10b list repos/B", q: req{method: "GET", target: "/v1/list?prefix=repos%2F" + tenantB + "%2F", cred: f.credA}, status: 400, code: "bad_prefix", msg: "not allowed"},
		{id: "10c list after ../x", q: req{method: "GET", target: "/v1/list?after=../x", cred: f.credA}, status: 400, code: "bad_prefix", msg: "after"},
		{id: "10d list duplicate key", q: req{method: "GET", target: "/v1/list?prefix=keys/&prefix=data/", cred: f.credA}, status: 400, code: "bad_request", msg: "twice"},
		{id: "11 HEAD B's snapshot", q: req{method: "HEAD", target: "/v1/repo/" + f.snapB, cred: f.credA}, status: 404},
		{id: "12 PUT with X-Coffer-Tenant", q: req{method: "PUT", target: "/v1/repo/" + packName(newA), cred: f.credA, body: newA,
			header: map[string][]string{"X-Coffer-Tenant": {tenantB}}}, status: 201,
			changes: func() string { return "repos/" + tenantA + "/" + packName(newA) }},
		{id: "13 DELETE own pack", q: req{method: "DELETE", target: "/v1/repo/" + f.packA, cred: f.credA}, status: 403, code: "append_only", msg: "append-only"},
		{id: "14 DELETE B's pack", q: req{method: "DELETE", target: "/v1/repo/" + f.packB, cred: f.credA}, status: 403, code: "append_only", msg: "append-only"},
		{id: "15 PUT existing pack", q: req{method: "PUT", target: "/v1/repo/" + f.packA, cred: f.credA, body: f.packABytes}, status: 409, code: "exists", msg: "already exists"},
		{id: "16 PUT existing key, other bytes", q: req{method: "PUT", target: "/v1/repo/" + f.keyA, cred: f.credA, body: newKeyBytes}, status: 409, code: "exists", msg: "already exists"},
		{id: "17 PUT config again", q: req{method: "PUT", target: "/v1/repo/config", cred: f.credA, body: []byte(`{"evil":1}`)}, status: 409, code: "exists", msg: "already exists"},
		{id: "18 digest mismatch", q: req{method: "PUT", target: "/v1/repo/" + packName(otherPack[:10]), cred: f.credA, body: otherPack}, status: 400, code: "digest_mismatch", msg: "nothing was stored"},
		{id: "18b digest mismatch, empty body", q: req{method: "PUT", target: "/v1/repo/" + packName(otherPack), cred: f.credA, body: []byte{}}, status: 400, code: "digest_mismatch", msg: "do not match"},
		{id: "19a shard mismatch", q: req{method: "PUT", target: "/v1/repo/data/cd/ab" + strings.Repeat("0", 62), cred: f.credA, body: []byte("x")}, status: 400, code: "bad_name", msg: "not a repository object name"},
		{id: "19b locks/x", q: req{method: "PUT", target: "/v1/repo/locks/x", cred: f.credA, body: []byte("x")}, status: 400, code: "bad_name", msg: "not a repository object name"},
		{id: "19c vault state", q: req{method: "PUT", target: "/v1/repo/vault/tenants/x.json", cred: f.credA, body: []byte("x")}, status: 400, code: "bad_name", msg: "not a repository object name"},
		{id: "19d Config", q: req{method: "PUT", target: "/v1/repo/Config", cred: f.credA, body: []byte("x")}, status: 400, code: "bad_name", msg: "not a repository object name"},
		{id: "20 over kind max", q: req{method: "PUT", target: "/v1/repo/keys/" + sha(bigPack), cred: f.credA, body: bigPack}, status: 413, code: "too_large", msg: "over the limit"},
		{id: "21 chunked", q: req{method: "PUT", target: "/v1/repo/" + packName(newKeyBytes), cred: f.credA, body: newKeyBytes, noLength: true}, status: 411, code: "length_required", msg: "Content-Length"},
		{id: "25 no Authorization", q: req{method: "GET", target: "/v1/repo/config"}, status: 401, code: "unauthenticated", msg: "missing credential",
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="cofferd"` {
					t.Errorf("WWW-Authenticate %q", got)
				}
			}},
		{id: "26a bad prefix", q: req{method: "GET", target: "/v1/repo/config", header: map[string][]string{"Authorization": {"Bearer cft1_" + f.credA.Reveal()[5:]}}}, status: 401, code: "invalid_credential", msg: "invalid credential"},
		{id: "26b 42-char secret", q: req{method: "GET", target: "/v1/repo/config", header: map[string][]string{"Authorization": {"Bearer " + f.credA.Reveal()[:len(f.credA.Reveal())-1]}}}, status: 401, code: "invalid_credential", msg: "invalid credential"},
		{id: "26c non-base64url", q: req{method: "GET", target: "/v1/repo/config", header: map[string][]string{"Authorization": {"Bearer " + f.credA.Reveal()[:len(f.credA.Reveal())-1] + "+"}}}, status: 401, code: "invalid_credential", msg: "invalid credential"},
		{id: "26d two headers", q: req{method: "GET", target: "/v1/repo/config", header: map[string][]string{"Authorization": {"Bearer " + f.credA.Reveal(), "Bearer " + f.credB.Reveal()}}}, status: 401, code: "invalid_credential", msg: "invalid credential"},
		{id: "26e basic auth", q: req{method: "GET", target: "/v1/repo/config", header: map[string][]string{"Authorization": {"Basic YTpi"}}}, status: 401, code: "invalid_credential", msg: "invalid credential"},
		{id: "27a unknown credential id", q: req{method: "GET", target: "/v1/repo/config", cred: unknownID}, status: 401, code: "invalid_credential", msg: "invalid credential"},
		{id: "27b wrong secret", q: req{method: "GET", target: "/v1/repo/config", cred: credBadSecret}, status: 401, code: "invalid_credential", msg: "invalid credential"},
		{id: "29a suspended GET", q: req{method: "GET", target: "/v1/repo/config", cred: f.credS}, status: 403, code: "tenant_suspended", msg: "suspended by your provider"},
		{id: "29b suspended PUT", q: req{method: "PUT", target: "/v1/repo/config", cred: f.credS, body: []byte("{}")}, status: 403, code: "tenant_suspended", msg: "suspended by your provider"},
		{id: "33a token in query", q: req{method: "POST", target: "/v1/enroll?token=cft1_x", body: []byte("{}")}, status: 400, code: "bad_path", msg: "no query parameters"},
		{id: "33b enroll garbage", q: req{method: "POST", target: "/v1/enroll", body: []byte("{garbage")}, status: 400, code: "bad_request", msg: "malformed JSON"},
		{id: "33d enroll with a malformed token", q: req{method: "POST", target: "/v1/enroll", body: []byte(`{"token":"cft1_nope"}`)}, status: 401, code: "invalid_credential", msg: "invalid enrollment token",
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="cofferd"` {
					t.Errorf("WWW-Authenticate %q", got)
				}
			}},
		{id: "33c enroll body > 4 KiB", q: req{method: "POST", target: "/v1/enroll", body: bytes.Repeat([]byte(" "), 5000)}, status: 413, code: "too_large", msg: "over 4096 bytes"},
		{id: "34 over quota", q: req{method: "PUT", target: "/v1/repo/" + packName(bigPack), cred: f.credA, body: bigPack}, status: 507, code: "quota_exceeded", msg: "quota 1.00 MiB"},
		{id: "36a PATCH", q: req{method: "PATCH", target: "/v1/repo/" + f.packA, cred: f.credA}, status: 405, code: "method_not_allowed", msg: "not allowed",
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if !strings.Contains(w.Header().Get("Allow"), "PUT") {
					t.Errorf("Allow %q", w.Header().Get("Allow"))
				}
			}},
		{id: "36b unknown route", q: req{method: "GET", target: "/v1/nothing", cred: f.credA}, status: 404, code: "not_found", msg: "no such route"},
		{id: "37a seed id ..", q: req{method: "GET", target: "/v1/seeds/../tenants", cred: f.credA}, status: 400, code: "bad_path", msg: "malformed request path"},
		{id: "37b seed id upper-case", q: req{method: "GET", target: "/v1/seeds/" + strings.Repeat("A", 64), cred: f.credA}, status: 400, code: "bad_path", msg: "malformed seed id"},
		{id: "37c seed id of B's tenant dir", q: req{method: "GET", target: "/v1/seeds/" + tenantB + "/manifest", cred: f.credA}, status: 400, code: "bad_path", msg: "malformed seed id"},
		{id: "37d seeds suspended", q: req{method: "GET", target: "/v1/seeds", cred: f.credS}, status: 403, code: "tenant_suspended", msg: "suspended by your provider"},
		{id: "37e seeds unauthenticated", q: req{method: "GET", target: "/v1/seeds"}, status: 401, code: "unauthenticated", msg: "missing credential"},
		{id: "37f seed registration without a registry", q: req{method: "PUT", target: "/v1/seeds/" + strings.Repeat("a", 64), cred: f.credA, body: []byte("{}"),
			header: map[string][]string{"Coffer-Seed-Signature": {strings.Repeat("ab", 64)}}}, status: 503, code: "store_unavailable", msg: "not available"},
		{id: "37i seed registration chunked", q: req{method: "PUT", target: "/v1/seeds/" + strings.Repeat("a", 64), cred: f.credA, body: []byte("{}"), noLength: true,
			header: map[string][]string{"Coffer-Seed-Signature": {strings.Repeat("ab", 64)}}}, status: 411, code: "length_required", msg: "Content-Length"},
		{id: "37g signing key body > 4 KiB", q: req{method: "POST", target: "/v1/signing-key", cred: f.credA, body: bytes.Repeat([]byte(" "), 5000)}, status: 413, code: "too_large", msg: "over 4096 bytes"},
		{id: "37h seed confirm GET", q: req{method: "GET", target: "/v1/seeds/" + strings.Repeat("a", 64) + "/confirm", cred: f.credA}, status: 405, code: "method_not_allowed", msg: "not allowed"},
		{id: "37j seed cancel GET", q: req{method: "GET", target: "/v1/seeds/" + strings.Repeat("a", 64) + "/cancel", cred: f.credA}, status: 405, code: "method_not_allowed", msg: "not allowed"},
		{id: "37k seed lost POST", q: req{method: "POST", target: "/v1/seeds/" + strings.Repeat("a", 64) + "/lost", cred: f.credA}, status: 405, code: "method_not_allowed", msg: "not allowed"},
		{id: "37l seed cancel unauthenticated", q: req{method: "POST", target: "/v1/seeds/" + strings.Repeat("a", 64) + "/cancel", body: []byte(`{"reason":"x"}`)}, status: 401, code: "unauthenticated", msg: "missing credential"},
		{id: "37m seed cancel suspended", q: req{method: "POST", target: "/v1/seeds/" + strings.Repeat("a", 64) + "/cancel", cred: f.credS, body: []byte(`{"reason":"x"}`)}, status: 403, code: "tenant_suspended", msg: "suspended by your provider"},
		{id: "37n seed cancel body > 4 KiB", q: req{method: "POST", target: "/v1/seeds/" + strings.Repeat("a", 64) + "/cancel", cred: f.credA, body: bytes.Repeat([]byte(" "), 5000)}, status: 413, code: "too_large", msg: "over 4096 bytes"},
		{id: "36c Range 5-2", q: req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA, header: map[string][]string{"Range": {"bytes=5-2"}}}, status: 416, code: "invalid_range", msg: "ends before"},
		{id: "36d multi-range", q: req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA, header: map[string][]string{"Range": {"bytes=0-1,3-4"}}}, status: 416, code: "invalid_range", msg: "one range"},
		{id: "36e range past end", q: req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA, header: map[string][]string{"Range": {"bytes=4000-"}}}, status: 416, code: "invalid_range", msg: "past the object",
			check: func(t *testing.T, w *httptest.ResponseRecorder) {
				if got := w.Header().Get("Content-Range"); got != "bytes */4000" {
					t.Errorf("Content-Range %q", got)
				}
			}},
		{id: "36f query on object route", q: req{method: "GET", target: "/v1/repo/config?x=1", cred: f.credA}, status: 400, code: "bad_path", msg: "no query"},
		{id: "36g dotfile segment", q: req{method: "GET", target: "/v1/repo/keys/.hidden", cred: f.credA}, status: 400, code: "bad_path", msg: "dot"},
	}
	if len(cases) < 25 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			before := snapshotStore(f.data, f.ledger)
			w := f.do(c.q)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d: %s", w.Code, c.status, w.Body.String())
			}
			e := errorOf(t, w)
			if e.Code != c.code {
				t.Errorf("code %q, want %q (%s)", e.Code, c.code, w.Body.String())
			}
			if !strings.Contains(e.Message, c.msg) {
				t.Errorf("message %q does not contain %q", e.Message, c.msg)
			}
			if c.check != nil {
				c.check(t, w)
			}
			after := snapshotStore(f.data, f.ledger)
			if c.changes == nil {
				if after != before {
					t.Errorf("store changed:\nbefore\n%s\nafter\n%s", before, after)
				}
				return
			}
			want := c.changes()
			if !strings.Contains(after, want) || strings.Contains(before, want) {
				t.Errorf("expected new object %s; store now\n%s", want, after)
			}
		})
	}
	// 37: B's objects are intact and readable with B's credential.
	w := f.do(req{method: "GET", target: "/v1/list", cred: f.credB})
	var page vaultapi.ListPage
	if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || len(page.Objects) != 3 || page.Next != "" {
		t.Fatalf("B's listing: %d %s", w.Code, w.Body.String())
	}
	if l := f.logs.String(); strings.Contains(l, f.credA.Reveal()[5:]) || strings.Contains(l, "cfa1_") || strings.Contains(l, "cft1_") {
		t.Errorf("log contains a secret")
	}
}
