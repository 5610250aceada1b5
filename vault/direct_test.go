package vault

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// presigning is a local store that presigns: its URLs name an httptest
// "store" server (directStore) that serves the objects with ranges.
type presigning struct {
	store.Store
	base string // the store server's URL
}

const fakeSignature = "X-Amz-Signature=0123456789abcdef0123456789abcdef"

func (p *presigning) PresignGet(_ context.Context, name string, expiry time.Duration) (*url.URL, error) {
	if expiry <= 0 {
		return nil, errors.New("no expiry")
	}
	return url.Parse(p.base + "/" + name + "?" + fakeSignature)
}

// directStore serves a store's objects at /<name> to GETs that carry the
// signature, and records what each request carried.
type directStore struct {
	data    store.Store
	hits    atomic.Int64
	mu      sync.Mutex
	headers []http.Header
	// mangle, when set, answers instead of serving the object.
	mangle func(w http.ResponseWriter, r *http.Request, body []byte) bool
}

func (d *directStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.hits.Add(1)
	d.mu.Lock()
	d.headers = append(d.headers, r.Header.Clone())
	d.mu.Unlock()
	if r.URL.RawQuery != fakeSignature {
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	b, err := store.ReadAll(r.Context(), d.data, strings.TrimPrefix(r.URL.Path, "/"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if d.mangle != nil && d.mangle(w, r, b) {
		return
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

// directFixture is the fixture's data and tenants behind a server with
// direct downloads on (reads of at least 1000 bytes), and the store server
// its redirects name.
func directFixture(t *testing.T) (*fixture, *directStore, *httptest.Server) {
	t.Helper()
	f := newFixture(t, DefaultLimits())
	ds := &directStore{data: f.data}
	sts := httptest.NewServer(ds)
	t.Cleanup(sts.Close)
	srv, err := New(Config{Data: &presigning{Store: f.data, base: sts.URL}, Auth: f.auth, Ledger: f.ledger, Limits: DefaultLimits(),
		Direct: DirectDownloads{Enabled: true, MinBytes: 1000}, Log: slog.New(slog.NewJSONHandler(f.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	g := *f
	g.srv, g.h = srv, srv.Handler()
	return &g, ds, sts
}

// TestDirectDownloadRedirects: a large pack read from an agent that can
// follow one is redirected to the tenant's own object in the store, after
// the same checks as a proxied read; anything else is proxied as before.
func TestDirectDownloadRedirects(t *testing.T) {
	f, _, sts := directFixture(t)
	accept := map[string][]string{vaultapi.HeaderAcceptDirect: {"1"}}
	w := f.do(req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA, header: accept})
	if w.Code != http.StatusTemporaryRedirect {
		t.Fatalf("GET with %s: %d %s", vaultapi.HeaderAcceptDirect, w.Code, w.Body)
	}
	want := sts.URL + "/repos/" + tenantA + "/" + f.packA + "?" + fakeSignature
	if loc := w.Header().Get("Location"); loc != want {
		t.Fatalf("Location %q, want %q", loc, want)
	}
	if w.Header().Get("Content-Range") != "" || w.Header().Get("ETag") != "" || w.Body.Len() != 0 {
		t.Fatalf("a redirect carried the object's headers or body: %v %q", w.Header(), w.Body)
	}
	ranged := map[string][]string{vaultapi.HeaderAcceptDirect: {"1"}, "Range": {"bytes=100-1199"}}
	if w := f.do(req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA, header: ranged}); w.Code != http.StatusTemporaryRedirect {
		t.Fatalf("ranged GET of 1100 bytes: %d", w.Code)
	}
	if got := metricValue(t, f.srv, "cofferd_tenant_direct_downloads_total", `tenant="`+tenantA+`"`); got != 2 {
		t.Fatalf("direct downloads counted %v, want 2", got)
	}
	if got := metricValue(t, f.srv, "cofferd_tenant_direct_download_bytes_total", `tenant="`+tenantA+`"`); got != 4000+1100 {
		t.Fatalf("direct bytes counted %v, want 5100", got)
	}

	for _, c := range []struct {
		name string
		q    req
		want int
	}{
		{"no accept header", req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA}, http.StatusOK},
		{"HEAD", req{method: "HEAD", target: "/v1/repo/" + f.packA, cred: f.credA, header: accept}, http.StatusOK},
		{"small range", req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA,
			header: map[string][]string{vaultapi.HeaderAcceptDirect: {"1"}, "Range": {"bytes=0-998"}}}, http.StatusPartialContent},
		{"not a pack", req{method: "GET", target: "/v1/repo/" + f.keyA, cred: f.credA, header: accept}, http.StatusOK},
		{"another tenant's pack", req{method: "GET", target: "/v1/repo/" + f.packB, cred: f.credA, header: accept}, http.StatusNotFound},
		{"missing pack", req{method: "GET", target: "/v1/repo/" + packName([]byte("none")), cred: f.credA, header: accept}, http.StatusNotFound},
		{"range past the end", req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credA,
			header: map[string][]string{vaultapi.HeaderAcceptDirect: {"1"}, "Range": {"bytes=5000-9000"}}}, http.StatusRequestedRangeNotSatisfiable},
		{"no credential", req{method: "GET", target: "/v1/repo/" + f.packA, header: accept}, http.StatusUnauthorized},
		{"suspended tenant", req{method: "GET", target: "/v1/repo/" + f.packA, cred: f.credS, header: accept}, http.StatusForbidden},
	} {
		w := f.do(c.q)
		if w.Code != c.want {
			t.Errorf("%s: %d, want %d (%s)", c.name, w.Code, c.want, w.Body)
		}
		if w.Header().Get("Location") != "" {
			t.Errorf("%s: redirected", c.name)
		}
	}
	if strings.Contains(f.logs.String(), fakeSignature) {
		t.Fatal("the request log holds a presigned URL")
	}
}

// TestDirectDownloadsNeedAPresigningStore: a store that cannot presign is
// refused at start rather than proxied silently.
func TestDirectDownloadsNeedAPresigningStore(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	_, err := New(Config{Data: f.data, Auth: f.auth, Direct: DirectDownloads{Enabled: true}})
	if err == nil || !strings.Contains(err.Error(), "presign") {
		t.Fatalf("New with direct downloads over a local store: %v", err)
	}
}

// TestAgentDirectDownloads drives redirects with the agent's client: it
// reads from the store with the Range alone (never the credential), falls
// back to the vault when the store cannot be read, and then stops asking.
func TestAgentDirectDownloads(t *testing.T) {
	f, ds, sts := directFixture(t)
	ts := httptest.NewServer(f.h)
	defer ts.Close()
	u, _ := url.Parse(ts.URL)
	var failures []error
	newClient := func() *vaultclient.Client {
		failures = nil
		v, err := vaultclient.New(vaultclient.Config{BaseURL: u, Credential: f.credA, OnDirectFailure: func(err error) { failures = append(failures, err) }})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		return v
	}
	ctx := t.Context()
	pack := randBytes(300 << 10)
	name := packName(pack)
	v := newClient()
	if err := v.Put(ctx, name, store.Bytes(pack), int64(len(pack))); err != nil {
		t.Fatal(err)
	}
	read := func(v *vaultclient.Client, off, n int64) {
		t.Helper()
		got, err := store.ReadRange(ctx, v, name, off, n)
		if err != nil || !bytes.Equal(got, pack[off:off+n]) {
			t.Fatalf("read %d+%d: %v", off, n, err)
		}
	}
	read(v, 0, int64(len(pack)))
	read(v, 5000, 100<<10)
	all, err := store.ReadAll(ctx, v, name)
	if err != nil || !bytes.Equal(all, pack) {
		t.Fatalf("read all: %v", err)
	}
	if ds.hits.Load() != 3 || len(failures) != 0 {
		t.Fatalf("store server reads %d, failures %v; want 3 and none", ds.hits.Load(), failures)
	}
	for _, h := range ds.headers {
		for k := range h {
			if k != "Range" && k != "User-Agent" && k != "Accept-Encoding" {
				t.Errorf("the store was sent header %s", k)
			}
		}
	}
	read(v, 0, 500) // small: through the vault
	if ds.hits.Load() != 3 {
		t.Fatal("a small read went to the store")
	}

	// The store answers a ranged read with the whole object: refused, and
	// read through the vault; later reads do not ask again.
	ds.mangle = func(w http.ResponseWriter, r *http.Request, b []byte) bool {
		_, _ = w.Write(b)
		return true
	}
	v = newClient()
	before := ds.hits.Load()
	read(v, 1000, 200<<10)
	read(v, 0, 200<<10)
	if ds.hits.Load() != before+1 || len(failures) != 1 || !strings.Contains(failures[0].Error(), "without a Range") && !strings.Contains(failures[0].Error(), "answered 200") {
		t.Fatalf("after a wrong answer: %d store reads, failures %v", ds.hits.Load()-before, failures)
	}
	if strings.Contains(failures[0].Error(), fakeSignature) {
		t.Fatal("the failure names the presigned URL")
	}

	// The store breaks off mid-body: that read fails (the retry layer
	// reads again), and the next goes through the vault.
	ds.mangle = func(w http.ResponseWriter, r *http.Request, b []byte) bool {
		w.Header().Set("Content-Range", strings.Replace(r.Header.Get("Range"), "=", " ", 1)+"/"+strconv.Itoa(len(b)))
		w.Header().Set("Content-Length", strconv.Itoa(200<<10))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(b[:1000])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	v = newClient()
	if _, err := store.ReadRange(ctx, v, name, 0, 200<<10); err == nil {
		t.Fatalf("a read cut off by the store succeeded (store reads %d, failures %v)", ds.hits.Load(), failures)
	}
	before = ds.hits.Load()
	read(v, 0, 200<<10)
	if ds.hits.Load() != before || len(failures) != 1 {
		t.Fatalf("after a cut: %d store reads, failures %v", ds.hits.Load()-before, failures)
	}

	// The store is unreachable: read through the vault at once.
	ds.mangle = nil
	sts.Close()
	v = newClient()
	read(v, 0, 200<<10)
	if len(failures) != 1 {
		t.Fatalf("failures %v, want one", failures)
	}

	// A client with direct downloads off never asks.
	off, err := vaultclient.New(vaultclient.Config{BaseURL: u, Credential: f.credA, NoDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	n := metricValue(t, f.srv, "cofferd_tenant_direct_downloads_total", `tenant="`+tenantA+`"`)
	read(off, 0, 200<<10)
	if metricValue(t, f.srv, "cofferd_tenant_direct_downloads_total", `tenant="`+tenantA+`"`) != n {
		t.Fatal("a client with NoDirect was redirected")
	}
}

// TestDirectRedirectChecked: a Location the agent must not follow (plain
// http to another host, another scheme, credentials in it) is refused, and
// the read made through the vault.
func TestDirectRedirectChecked(t *testing.T) {
	for _, loc := range []string{"http://store.example/x?" + fakeSignature, "ftp://127.0.0.1/x", "https://user:pw@store.example/x", "/relative"} {
		var got string
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get(vaultapi.HeaderAcceptDirect) == "1" {
				w.Header().Set("Location", loc)
				w.WriteHeader(http.StatusTemporaryRedirect)
				return
			}
			got = r.Header.Get("Range")
			w.Header().Set("Content-Range", "bytes 0-9/100")
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write([]byte("0123456789"))
		})
		ts := httptest.NewServer(h)
		u, _ := url.Parse(ts.URL)
		var failures []error
		cred, _ := (&fakeAuth{creds: map[string]*Principal{}, revoked: map[string]bool{}}).add(Principal{TenantID: tenantA})
		v, err := vaultclient.New(vaultclient.Config{BaseURL: u, Credential: cred, OnDirectFailure: func(err error) { failures = append(failures, err) }})
		if err != nil {
			t.Fatal(err)
		}
		b, err := store.ReadRange(t.Context(), v, packName([]byte("x")), 0, 10)
		if err != nil || string(b) != "0123456789" || got != "bytes=0-9" || len(failures) != 1 {
			t.Errorf("Location %q: %q %v, failures %v", loc, b, err, failures)
		}
		if len(failures) == 1 && strings.Contains(failures[0].Error(), fakeSignature) {
			t.Errorf("Location %q: the failure names the URL", loc)
		}
		v.Close()
		ts.Close()
	}
}
