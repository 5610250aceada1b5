package vault

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/buildinfo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

func TestGetRangeHeadList(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	w := f.do(req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA})
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), f.packABytes) || w.Header().Get("ETag") != `"`+f.packA[8:]+`"` {
		t.Fatalf("GET: %d etag %q", w.Code, w.Header().Get("ETag"))
	}
	w = f.do(req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA, header: map[string][]string{"Range": {"bytes=10-19"}}})
	if w.Code != 206 || !bytes.Equal(w.Body.Bytes(), f.packABytes[10:20]) || w.Header().Get("Content-Range") != "bytes 10-19/4000" {
		t.Fatalf("range: %d %q", w.Code, w.Header().Get("Content-Range"))
	}
	w = f.do(req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA, header: map[string][]string{"Range": {"bytes=3990-"}}})
	if w.Code != 206 || !bytes.Equal(w.Body.Bytes(), f.packABytes[3990:]) {
		t.Fatalf("open range: %d", w.Code)
	}
	w = f.do(req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA, header: map[string][]string{"Range": {"bytes=3990-99999"}}})
	if w.Code != 206 || w.Header().Get("Content-Range") != "bytes 3990-3999/4000" {
		t.Fatalf("clamped range: %d %q", w.Code, w.Header().Get("Content-Range"))
	}
	w = f.do(req{method: "HEAD", target: "/v1/repo/" + f.packA, cred: f.credA})
	if w.Code != 200 || w.Header().Get("Content-Length") != "4000" || w.Body.Len() != 0 {
		t.Fatalf("HEAD: %d %v", w.Code, w.Header())
	}
	// Paged listing, in order, A's objects only.
	var names []string
	after := ""
	for i := 0; i < 10; i++ {
		target := "/v1/list?limit=1"
		if after != "" {
			target += "&after=" + after
		}
		w = f.do(req{method: "GET", target: target, cred: f.credA})
		var page vaultapi.ListPage
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &page) != nil {
			t.Fatalf("list: %d %s", w.Code, w.Body.String())
		}
		for _, o := range page.Objects {
			names = append(names, o.Name)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	want := []string{"config", f.packA, f.keyA}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("listing %v, want %v", names, want)
	}
	w = f.do(req{method: "GET", target: "/v1/list?prefix=keys%2F", cred: f.credA})
	if !strings.Contains(w.Body.String(), f.keyA) || strings.Contains(w.Body.String(), "config") {
		t.Fatalf("prefix listing: %s", w.Body.String())
	}
	w = f.do(req{method: "GET", target: "/v1/list?limit=0", cred: f.credA})
	if w.Code != 400 {
		t.Fatalf("limit=0: %d", w.Code)
	}
	w = f.do(req{method: "GET", target: "/v1/tenant", cred: f.credA})
	if w.Code != 200 || !strings.Contains(w.Body.String(), tenantA) {
		t.Fatalf("tenant: %d %s", w.Code, w.Body.String())
	}
	w = f.do(req{method: "GET", target: "/healthz"})
	if w.Code != 200 {
		t.Fatalf("healthz: %d", w.Code)
	}
	f.srv.Drain()
	w = f.do(req{method: "GET", target: "/healthz"})
	if e := errorOf(t, w); w.Code != 503 || e.Code != "draining" {
		t.Fatalf("draining healthz: %d %s", w.Code, w.Body.String())
	}
}

func TestRevokedSuspendedAndCache(t *testing.T) {
	lim := DefaultLimits()
	lim.AuthCacheTTL = 0
	f := newFixture(t, lim)
	f.auth.mu.Lock()
	f.auth.revoked[f.idB] = true
	f.auth.mu.Unlock()
	w := f.do(req{method: "GET", target: "/v1/repo/config", cred: f.credB})
	if e := errorOf(t, w); w.Code != 401 || e.Code != "credential_revoked" {
		t.Fatalf("revoked: %d %s", w.Code, w.Body.String())
	}
	f.auth.suspend(tenantA, true)
	w = f.do(req{method: "GET", target: "/v1/repo/config", cred: f.credA})
	if e := errorOf(t, w); w.Code != 403 || e.Code != "tenant_suspended" || !strings.Contains(e.Message, "acme") {
		t.Fatalf("suspended: %d %s", w.Code, w.Body.String())
	}
	f.auth.suspend(tenantA, false)
	w = f.do(req{method: "GET", target: "/v1/repo/config", cred: f.credA})
	if w.Code != 200 {
		t.Fatalf("resumed: %d %s", w.Code, w.Body.String())
	}
	// With a cache, the second request does not ask the authenticator.
	lim.AuthCacheTTL = time.Minute
	g := newFixture(t, lim)
	g.auth.calls = 0
	for i := 0; i < 3; i++ {
		if w := g.do(req{method: "GET", target: "/v1/repo/config", cred: g.credA}); w.Code != 200 {
			t.Fatal(w.Code)
		}
	}
	if g.auth.calls != 0 { // the fixture's PUTs already cached A
		t.Fatalf("authenticator called %d times with a warm cache", g.auth.calls)
	}
	bad := vaultapi.Secret(g.credA.Reveal()[:len(g.credA.Reveal())-4] + "AAAA")
	if w := g.do(req{method: "GET", target: "/v1/repo/config", cred: bad}); w.Code != 401 {
		t.Fatalf("wrong secret with a warm cache: %d", w.Code)
	}
}

func TestRateLimited(t *testing.T) {
	lim := DefaultLimits()
	lim.TenantRPS, lim.TenantBurst = 1, 4
	f := newFixture(t, lim) // its 6 PUTs use most of the burst
	var last *httptest.ResponseRecorder
	for i := 0; i < 5; i++ {
		last = f.do(req{method: "GET", target: "/v1/repo/config", cred: f.credA})
	}
	e := errorOf(t, last)
	if last.Code != 429 || e.Code != "rate_limited" || !strings.Contains(e.Message, "requests/s") {
		t.Fatalf("burst: %d %s", last.Code, last.Body.String())
	}
	if ra := last.Header().Get("Retry-After"); ra == "" || strings.ContainsAny(ra, ".") || e.RetryAfterSeconds < 1 {
		t.Fatalf("Retry-After %q, body %d", ra, e.RetryAfterSeconds)
	}
	// Another tenant is not affected.
	if w := f.do(req{method: "GET", target: "/v1/repo/config", cred: f.credB}); w.Code != 200 {
		t.Fatalf("B throttled by A: %d", w.Code)
	}
}

func TestAuthFailureLimiter(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	unknown, _, _, _ := vaultapi.NewCredential()
	var w *httptest.ResponseRecorder
	for i := 0; i < 40; i++ {
		w = f.do(req{method: "GET", target: "/v1/repo/config", cred: unknown})
	}
	if w.Code != 429 {
		t.Fatalf("after 40 failures: %d", w.Code)
	}
}

// startServer runs the handler on a real loopback listener.
func startServer(t *testing.T, f *fixture) string {
	t.Helper()
	ts := httptest.NewUnstartedServer(f.h)
	ts.Config.ReadHeaderTimeout = 2 * time.Second
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String()
}

func rawPut(t *testing.T, addr string, cred vaultapi.Secret, name string, declared int, body []byte, pace time.Duration) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "PUT /v1/repo/%s HTTP/1.1\r\nHost: vault\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", name, cred.Reveal(), declared)
	if pace == 0 {
		_, _ = c.Write(body)
	} else {
		for _, b := range body {
			if _, err := c.Write([]byte{b}); err != nil {
				break
			}
			time.Sleep(pace)
		}
	}
	return c, bufio.NewReader(c)
}

func TestTruncatedUpload(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	addr := startServer(t, f)
	before := snapshotStore(f.data, f.ledger)
	body := randBytes(64 << 10)
	c, _ := rawPut(t, addr, f.credA, packName(body), len(body), body[:len(body)/2], 0)
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(f.logs.String(), `"code":"truncated"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no truncated log line:\n%s", f.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if after := snapshotStore(f.data, f.ledger); after != before {
		t.Fatalf("store changed:\n%s\n%s", before, after)
	}
	if f.ledger.releases == 0 {
		t.Fatal("reservation not released")
	}
}

func TestSlowUploadAndSlotFreed(t *testing.T) {
	lim := DefaultLimits()
	lim.MinUploadRate, lim.RateWindow, lim.TenantUploads, lim.SlotWait = 1000, 300*time.Millisecond, 1, 100*time.Millisecond
	f := newFixture(t, lim)
	addr := startServer(t, f)
	before := snapshotStore(f.data, f.ledger)
	body := randBytes(2000)
	var wg sync.WaitGroup
	wg.Add(1)
	var resp *http.Response
	var rerr error
	go func() {
		defer wg.Done()
		c, br := rawPut(t, addr, f.credA, packName(body), len(body), body[:40], 50*time.Millisecond)
		defer c.Close()
		resp, rerr = http.ReadResponse(br, nil)
	}()
	// While the slow upload holds the only slot, another upload is refused.
	time.Sleep(100 * time.Millisecond)
	other := randBytes(100)
	if w := f.do(req{method: "PUT", target: "/v1/repo/" + packName(other), cred: f.credA, body: other}); w.Code != 429 || errorOf(t, w).Code != "too_many_uploads" {
		t.Errorf("second upload while slot busy: %d %s", w.Code, w.Body.String())
	}
	wg.Wait()
	if rerr != nil {
		t.Fatal(rerr)
	}
	b, _ := io.ReadAll(resp.Body)
	var eb vaultapi.ErrorBody
	_ = json.Unmarshal(b, &eb)
	if resp.StatusCode != 408 || eb.Error.Code != "too_slow" {
		t.Fatalf("slow upload: %d %s", resp.StatusCode, b)
	}
	if after := snapshotStore(f.data, f.ledger); after != before {
		t.Fatalf("store changed:\n%s\n%s", before, after)
	}
	f.mustPut(f.credA, packName(other), other)
}

func TestOversizeBodyNotRead(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	addr := startServer(t, f)
	big := 70 << 10
	cr := &countingReader{r: bytes.NewReader(make([]byte, big))}
	r, _ := http.NewRequest("PUT", "http://"+addr+"/v1/repo/keys/"+strings.Repeat("0", 64), cr)
	r.ContentLength = int64(big)
	r.Header.Set("Authorization", "Bearer "+f.credA.Reveal())
	r.Header.Set("Expect", "100-continue")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 || cr.n != 0 {
		t.Fatalf("status %d, body bytes sent %d", resp.StatusCode, cr.n)
	}
}

func TestMetricsAndLogs(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	f.do(req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA})
	w := httptest.NewRecorder()
	f.srv.MetricsHandler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	for _, want := range []string{
		`cofferd_http_requests_total{code="201",method="PUT",route="repo"}`,
		`cofferd_tenant_bytes_in_total{tenant="` + tenantA + `"}`,
		`cofferd_tenant_bytes_out_total{tenant="` + tenantA + `"}`,
		"cofferd_http_request_duration_seconds_bucket",
		"process_resident_memory_bytes",
		`coffer_build_info{version="` + buildinfo.Version() + `"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "acme") {
		t.Error("metrics carry a tenant name")
	}
	lines := strings.Split(strings.TrimSpace(f.logs.String()), "\n")
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"req_id", "remote", "method", "route", "kind", "tenant", "status", "code", "bytes_in", "bytes_out", "dur_ms"} {
		if _, ok := last[k]; !ok {
			t.Errorf("access log lacks %s: %v", k, last)
		}
	}
	if last["bytes_out"].(float64) != 4000 || last["tenant"] != tenantA {
		t.Errorf("access line %v", last)
	}
}

// statCounter counts the Stat calls that reach the data store.
type statCounter struct {
	store.Store
	n atomic.Int64
}

func (s *statCounter) Stat(ctx context.Context, name string) (store.Info, error) {
	s.n.Add(1)
	return s.Store.Stat(ctx, name)
}

// A pack's size is looked up once and then reused by range reads, since a
// content-named object cannot change; HEAD always asks the store, and a
// pack deleted behind the vault's back answers 404 to the next GET, cached
// size or not.
func TestObjectSizeCache(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	sc := &statCounter{Store: f.data}
	f.srv.data = sc
	rng := func(r string) map[string][]string { return map[string][]string{"Range": {r}} }
	for i, r := range []string{"bytes=0-99", "bytes=100-199", "bytes=3900-"} {
		w := f.do(req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA, header: rng(r)})
		if w.Code != 206 || w.Header().Get("Content-Range") == "" || !strings.HasSuffix(w.Header().Get("Content-Range"), "/4000") {
			t.Fatalf("GET %d (%s): %d %q", i, r, w.Code, w.Header().Get("Content-Range"))
		}
	}
	if got := sc.n.Load(); got != 1 {
		t.Fatalf("3 range reads of one pack made %d Stat calls, want 1", got)
	}
	// An unsatisfiable range is judged against the cached size too.
	if w := f.do(req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA, header: rng("bytes=5000-")}); w.Code != 416 || w.Header().Get("Content-Range") != "bytes */4000" {
		t.Fatalf("range past the end: %d %q", w.Code, w.Header().Get("Content-Range"))
	}
	for i := 0; i < 2; i++ {
		if w := f.do(req{method: "HEAD", target: "/v1/repo/" + f.packA, cred: f.credA}); w.Code != 200 {
			t.Fatalf("HEAD: %d", w.Code)
		}
	}
	if got := sc.n.Load(); got != 3 {
		t.Fatalf("after 2 HEADs: %d Stat calls, want 3", got)
	}
	// B's request for the same name is B's object, not A's cached one.
	if w := f.do(req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credB, header: rng("bytes=0-9")}); w.Code != 404 {
		t.Fatalf("B reading A's pack name: %d", w.Code)
	}
	if err := f.data.Delete(context.Background(), objectKey(tenantA, f.packA)); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"GET", "GET", "HEAD"} {
		w := f.do(req{method: m, target: "/v1/repo/" + f.packA, cred: f.credA, header: rng("bytes=0-9")})
		if w.Code != 404 || w.Header().Get("Content-Range") != "" {
			t.Fatalf("%s of a deleted pack: %d %q %s", m, w.Code, w.Header().Get("Content-Range"), w.Body.String())
		}
	}
}
