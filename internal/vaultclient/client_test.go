package vaultclient_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// fakeVault is a minimal in-memory cofferd: the agent routes of the wire
// contract, one tenant, one credential. With strict it checks names against
// the repository grammar and refuses deletes as the real vault does; without
// it accepts any valid name and deletes, so the conformance suite can run.
type fakeVault struct {
	t      *testing.T
	cred   vaultapi.Secret
	strict bool
	limit  int // list page size

	mu      sync.Mutex
	objs    map[string][]byte
	mods    map[string]time.Time // when each object was put
	puts    atomic.Int64         // PUT requests seen
	enrolls []vaultapi.EnrollRequest
	tokens  map[string]string // token -> credential sha256 it was used with ("" = unused)
	// hook, when set, sees every request first; it returns true when it
	// answered the request itself.
	hook func(w http.ResponseWriter, r *http.Request) bool
}

func newFakeVault(t *testing.T, strict bool) (*fakeVault, *httptest.Server) {
	t.Helper()
	cred, _, _, err := vaultapi.NewCredential()
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeVault{t: t, cred: cred, strict: strict, limit: 3, objs: map[string][]byte{}, mods: map[string]time.Time{}, tokens: map[string]string{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func fakeError(w http.ResponseWriter, code, msg string, retry int) {
	w.Header().Set("Content-Type", "application/json")
	if retry > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retry))
	}
	w.WriteHeader(vaultapi.StatusOf(code))
	var b vaultapi.ErrorBody
	b.Error = vaultapi.ErrorDetail{Code: code, Message: msg, RequestID: "req-1", RetryAfterSeconds: retry}
	_ = json.NewEncoder(w).Encode(b)
}

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.hook != nil && f.hook(w, r) {
		return
	}
	if r.URL.Path == vaultapi.RouteEnroll {
		f.enroll(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.cred.Reveal() {
		fakeError(w, vaultapi.CodeInvalidCredential, "invalid credential", 0)
		return
	}
	switch {
	case r.URL.Path == vaultapi.RouteTenant:
		_ = json.NewEncoder(w).Encode(vaultapi.TenantInfo{ID: strings.Repeat("a", 24), Name: "acme", State: vaultapi.StateActive})
	case r.URL.Path == vaultapi.RouteList:
		f.list(w, r)
	case strings.HasPrefix(r.URL.Path, vaultapi.RouteRepo):
		f.object(w, r, strings.TrimPrefix(r.URL.Path, vaultapi.RouteRepo))
	default:
		fakeError(w, vaultapi.CodeNotFound, "no such route", 0)
	}
}

func (f *fakeVault) enroll(w http.ResponseWriter, r *http.Request) {
	var req vaultapi.EnrollRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, vaultapi.MaxEnrollBody)).Decode(&req); err != nil {
		fakeError(w, vaultapi.CodeBadRequest, "bad json", 0)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.enrolls = append(f.enrolls, req)
	used, ok := f.tokens[req.Token.Reveal()]
	switch {
	case !ok:
		fakeError(w, vaultapi.CodeTokenExpired, "enrollment token expired on 2024-01-01; ask your provider for a new one", 0)
		return
	case used != "" && used != req.CredentialSHA256:
		fakeError(w, vaultapi.CodeTokenUsed, "this enrollment token was already used by another agent; ask your provider for a new one: cofferd tenant token acme", 0)
		return
	}
	f.tokens[req.Token.Reveal()] = req.CredentialSHA256
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(vaultapi.EnrollResponse{TenantID: strings.Repeat("a", 24), TenantName: "acme", CredentialID: req.CredentialID})
}

func (f *fakeVault) checkName(w http.ResponseWriter, name string) bool {
	err := store.ValidName(name)
	if err == nil && f.strict {
		_, err = vaultapi.ParseRepoName(name)
	}
	if err != nil {
		fakeError(w, vaultapi.CodeBadName, err.Error(), 0)
		return false
	}
	return true
}

func (f *fakeVault) object(w http.ResponseWriter, r *http.Request, name string) {
	if !f.checkName(w, name) {
		return
	}
	f.mu.Lock()
	b, ok := f.objs[name]
	f.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		f.puts.Add(1)
		if r.ContentLength < 0 {
			fakeError(w, vaultapi.CodeLengthRequired, "Content-Length required", 0)
			return
		}
		if ok {
			fakeError(w, vaultapi.CodeExists, "object exists", 0)
			return
		}
		body := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			fakeError(w, vaultapi.CodeTruncated, "body ended early; nothing was stored", 0)
			return
		}
		if d := vaultapi.NameDigest(name); f.strict && d != "" {
			sum := sha256.Sum256(body)
			if hex.EncodeToString(sum[:]) != d {
				fakeError(w, vaultapi.CodeDigestMismatch, "bytes do not match their name; nothing was stored", 0)
				return
			}
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.objs[name]; ok {
			fakeError(w, vaultapi.CodeExists, "object exists", 0)
			return
		}
		f.objs[name] = body
		f.mods[name] = time.Now()
		w.WriteHeader(http.StatusCreated)
	case http.MethodHead, http.MethodGet:
		if !ok {
			fakeError(w, vaultapi.CodeNotFound, "no such object", 0)
			return
		}
		w.Header().Set("Accept-Ranges", "bytes")
		w.Header().Set("Last-Modified", f.mods[name].UTC().Format(http.TimeFormat))
		rng := r.Header.Get("Range")
		if rng == "" || r.Method == http.MethodHead {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			if r.Method == http.MethodGet {
				_, _ = w.Write(b)
			}
			return
		}
		first, last, err := parseRange(rng, int64(len(b)))
		if err != nil {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(b)))
			fakeError(w, vaultapi.CodeInvalidRange, err.Error(), 0)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, len(b)))
		w.Header().Set("Content-Length", strconv.FormatInt(last-first+1, 10))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(b[first : last+1])
	case http.MethodDelete:
		if f.strict {
			fakeError(w, vaultapi.CodeAppendOnly, "agents cannot delete", 0)
			return
		}
		f.mu.Lock()
		delete(f.objs, name)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		fakeError(w, vaultapi.CodeMethodNotAllowed, "method not allowed", 0)
	}
}

// parseRange parses one "bytes=a-b" or "bytes=a-" range against size.
func parseRange(h string, size int64) (int64, int64, error) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	a, b, ok2 := strings.Cut(spec, "-")
	if !ok || !ok2 || strings.Contains(spec, ",") {
		return 0, 0, errors.New("invalid range")
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first >= size {
		return 0, 0, errors.New("unsatisfiable range")
	}
	last := size - 1
	if b != "" {
		l, err := strconv.ParseInt(b, 10, 64)
		if err != nil || l < first {
			return 0, 0, errors.New("invalid range")
		}
		last = min(l, size-1)
	}
	return first, last, nil
}

func (f *fakeVault) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	prefix, after := q.Get("prefix"), q.Get("after")
	if f.strict {
		if err := vaultapi.ValidListPrefix(prefix); err != nil {
			fakeError(w, vaultapi.CodeBadPrefix, err.Error(), 0)
			return
		}
	}
	f.mu.Lock()
	var names []string
	for n := range f.objs {
		if strings.HasPrefix(n, prefix) && n > after {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	page := vaultapi.ListPage{Objects: []vaultapi.ObjectInfo{}}
	for i, n := range names {
		if i == f.limit {
			page.Next = names[i-1]
			break
		}
		page.Objects = append(page.Objects, vaultapi.ObjectInfo{Name: n, Size: int64(len(f.objs[n])), Modified: f.mods[n]})
	}
	f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(page)
}

func (f *fakeVault) config(t *testing.T, srv *httptest.Server) vaultclient.Config {
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return vaultclient.Config{BaseURL: u, Credential: f.cred}
}

func newVaultClient(t *testing.T, f *fakeVault, srv *httptest.Server) *vaultclient.Client {
	t.Helper()
	v, err := vaultclient.New(f.config(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func TestVaultConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		f, srv := newFakeVault(t, false)
		return newVaultClient(t, f, srv)
	})
}

func packName(b []byte) string {
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:])
	return "data/" + h[:2] + "/" + h
}

func TestVaultPutGetStrict(t *testing.T) {
	f, srv := newFakeVault(t, true)
	v := newVaultClient(t, f, srv)
	ctx := t.Context()
	body := bytes.Repeat([]byte("coffer"), 50_000)
	name := packName(body)
	if err := v.Put(ctx, name, bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatalf("Put: %v", err)
	}
	// A second Put is 409 exists: ErrExists, permanent.
	err := v.Put(ctx, name, bytes.NewReader(body), int64(len(body)))
	if !errors.Is(err, store.ErrExists) || !store.IsPermanent(err) {
		t.Fatalf("second Put = %v; want permanent ErrExists", err)
	}
	// Bytes that do not match the name: 400 digest_mismatch, permanent.
	other := packName([]byte("other"))
	err = v.Put(ctx, other, bytes.NewReader(body), int64(len(body)))
	var pe *store.PermanentError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "digest_mismatch") {
		t.Fatalf("mismatched Put = %v; want a PermanentError naming digest_mismatch", err)
	}
	// A name outside the grammar: 400 bad_name -> ErrInvalidName.
	if err := v.Put(ctx, "data/zz", bytes.NewReader(body), 1); !errors.Is(err, store.ErrInvalidName) {
		t.Fatalf("Put(data/zz) = %v; want ErrInvalidName", err)
	}
	// Ranges.
	for _, c := range []struct{ off, n int64 }{{0, -1}, {0, 10}, {7, 100}, {int64(len(body)) - 1, 1}, {1000, -1}, {int64(len(body)), -1}, {5, 0}} {
		got, err := readRange(ctx, v, name, c.off, c.n)
		end := c.off + c.n
		if c.n < 0 {
			end = int64(len(body))
		}
		if err != nil || !bytes.Equal(got, body[c.off:end]) {
			t.Errorf("Get(%d, %d) = %d bytes, %v; want %d bytes", c.off, c.n, len(got), err, end-c.off)
		}
	}
	for _, c := range []struct{ off, n int64 }{{int64(len(body)) - 1, 2}, {int64(len(body)), 1}, {int64(len(body)) + 1, -1}} {
		if _, err := readRange(ctx, v, name, c.off, c.n); !errors.Is(err, store.ErrInvalidRange) {
			t.Errorf("Get(%d, %d) = %v; want ErrInvalidRange", c.off, c.n, err)
		}
	}
	// Delete: 403 append_only -> ErrDenied with the append-only text.
	err = v.Delete(ctx, name)
	if !errors.Is(err, store.ErrDenied) || !strings.Contains(err.Error(), "the vault is append-only: agents cannot delete objects") {
		t.Fatalf("Delete = %v; want ErrDenied saying the vault is append-only", err)
	}
	if _, err := v.Stat(ctx, name); err != nil {
		t.Fatalf("Stat after refused Delete: %v", err)
	}
	if loc := v.Location(); loc != srv.URL || strings.Contains(loc, f.cred.Reveal()) {
		t.Fatalf("Location = %q; want %q without the credential", loc, srv.URL)
	}
}

func readRange(ctx context.Context, s store.Store, name string, off, n int64) ([]byte, error) {
	var got []byte
	err := s.Get(ctx, name, off, n, func(r io.Reader) error {
		var err error
		got, err = io.ReadAll(r)
		return err
	})
	return got, err
}

func TestVaultListPaging(t *testing.T) {
	f, srv := newFakeVault(t, true)
	v := newVaultClient(t, f, srv)
	var want []string
	for i := range 10 {
		b := []byte(fmt.Sprintf("pack %d", i))
		name := packName(b)
		f.objs[name] = b
		want = append(want, name)
	}
	f.objs["config"] = []byte("c")
	slices.Sort(want)
	var pages atomic.Int64
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == vaultapi.RouteList {
			pages.Add(1)
		}
		return false
	}
	var got []string
	err := v.List(t.Context(), "data/", func(i store.Info) error {
		got = append(got, i.Name)
		return nil
	})
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("List = %v, %v; want %d names in order", got, err, len(want))
	}
	if n := pages.Load(); n != 4 {
		t.Errorf("List fetched %d pages of 3; want 4", n)
	}
	// An fn error stops the listing.
	stop := errors.New("stop")
	calls := 0
	if err := v.List(t.Context(), "data/", func(store.Info) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with failing fn = %v after %d calls", err, calls)
	}
	// A prefix the vault refuses: 400 bad_prefix -> ErrInvalidName.
	if err := v.List(t.Context(), "data/x", func(store.Info) error { return nil }); !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("List(data/x) = %v; want ErrInvalidName", err)
	}
}

func TestVaultListBadPages(t *testing.T) {
	f, srv := newFakeVault(t, true)
	v := newVaultClient(t, f, srv)
	n1 := packName([]byte("1"))
	cases := map[string]string{
		"cut off":        `{"objects":[{"name":"` + n1 + `","size":1}`,
		"not advancing":  `{"objects":[],"next":""}` + "",
		"outside prefix": `{"objects":[{"name":"index/` + strings.Repeat("0", 64) + `","size":1}],"next":""}`,
		"stuck next":     `{"objects":[{"name":"` + n1 + `","size":1}],"next":"data/"}`,
	}
	for what, body := range cases {
		f.hook = func(w http.ResponseWriter, r *http.Request) bool {
			if r.URL.Path != vaultapi.RouteList {
				return false
			}
			if r.URL.Query().Get("after") != "" {
				body = `{"objects":[],"next":"` + r.URL.Query().Get("after") + `"}`
			}
			_, _ = io.WriteString(w, body)
			return true
		}
		err := v.List(t.Context(), "data/", func(store.Info) error { return nil })
		if what == "not advancing" {
			if err != nil {
				t.Errorf("%s: List = %v; want nil for an empty final page", what, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: List = nil; want an error", what)
		}
	}
}

// TestVaultStatusMapping checks every row of the design's status table.
func TestVaultStatusMapping(t *testing.T) {
	f, srv := newFakeVault(t, true)
	v := newVaultClient(t, f, srv)
	name := packName([]byte("x"))
	type check func(t *testing.T, err error)
	is := func(target error) check {
		return func(t *testing.T, err error) {
			if !errors.Is(err, target) {
				t.Errorf("err = %v; want %v", err, target)
			}
		}
	}
	permanent := func(t *testing.T, err error) {
		var pe *store.PermanentError
		if !errors.As(err, &pe) || !store.IsPermanent(err) {
			t.Errorf("err = %v; want a PermanentError", err)
		}
	}
	transient := func(t *testing.T, err error) {
		if err == nil || store.IsPermanent(err) {
			t.Errorf("err = %v; want a transient error", err)
		}
	}
	retryAfter := func(wait time.Duration, reason string) check {
		return func(t *testing.T, err error) {
			var ra *store.RetryAfterError
			if !errors.As(err, &ra) || ra.Wait != wait || ra.Reason != reason || store.IsPermanent(err) {
				t.Errorf("err = %v; want a transient RetryAfterError{%s, %s}", err, wait, reason)
			}
		}
	}
	cases := []struct {
		code   string
		status int // when code is "", a bare status without a JSON body
		retry  int
		msg    string
		checks []check
		text   []string
	}{
		{code: vaultapi.CodeBadName, checks: []check{is(store.ErrInvalidName)}},
		{code: vaultapi.CodeBadPath, checks: []check{is(store.ErrInvalidName)}},
		{code: vaultapi.CodeBadPrefix, checks: []check{is(store.ErrInvalidName)}},
		{code: vaultapi.CodeDigestMismatch, msg: "pack bytes do not match", checks: []check{permanent}, text: []string{"pack bytes do not match", "req-1"}},
		{code: vaultapi.CodeTruncated, checks: []check{permanent}},
		{code: vaultapi.CodeBadRequest, checks: []check{permanent}},
		{code: vaultapi.CodeMethodNotAllowed, checks: []check{permanent}},
		{code: vaultapi.CodeLengthRequired, checks: []check{permanent}},
		{code: vaultapi.CodeTooLarge, checks: []check{permanent}},
		{code: vaultapi.CodeInvalidCredential, checks: []check{is(store.ErrDenied)}, text: []string{"re-enroll", "coffer init --repo URL --token", "invalid_credential"}},
		{code: vaultapi.CodeCredentialRevoked, checks: []check{is(store.ErrDenied)}, text: []string{"re-enroll", "credential_revoked"}},
		{code: vaultapi.CodeTenantSuspended, msg: "tenant acme is suspended by your provider", checks: []check{is(store.ErrDenied)}, text: []string{"tenant acme is suspended", "contact your provider"}},
		{code: vaultapi.CodeNotFound, checks: []check{is(store.ErrNotFound)}},
		{code: vaultapi.CodeTooSlow, checks: []check{transient}},
		{code: vaultapi.CodeInternal, checks: []check{transient}},
		{status: http.StatusBadGateway, checks: []check{transient}},
		{status: http.StatusGatewayTimeout, checks: []check{transient}},
		{code: vaultapi.CodeExists, checks: []check{is(store.ErrExists)}},
		{code: vaultapi.CodeInvalidRange, checks: []check{is(store.ErrInvalidRange)}},
		{code: vaultapi.CodeRateLimited, retry: 7, checks: []check{retryAfter(7*time.Second, store.ReasonThrottled)}},
		{code: vaultapi.CodeUploadInProgress, retry: 2, checks: []check{retryAfter(2*time.Second, vaultapi.CodeUploadInProgress)}},
		{code: vaultapi.CodeStoreUnavailable, retry: 5, checks: []check{retryAfter(5*time.Second, vaultapi.CodeStoreUnavailable)}},
		{status: http.StatusServiceUnavailable, checks: []check{retryAfter(0, "unavailable")}},
		{code: vaultapi.CodeStoreFull, checks: []check{is(store.ErrNoSpace)}},
		{code: vaultapi.CodeQuotaExceeded, msg: `tenant "acme": quota 1.00 MiB exceeded`, checks: []check{
			is(store.ErrNoSpace), permanent2,
			func(t *testing.T, err error) {
				var qe *store.QuotaError
				if !errors.As(err, &qe) || qe.Msg != `tenant "acme": quota 1.00 MiB exceeded` {
					t.Errorf("err = %v; want a QuotaError with the server's message", err)
				}
			},
		}},
		{status: http.StatusTeapot, checks: []check{permanent}},
	}
	for _, c := range cases {
		label := c.code
		if label == "" {
			label = strconv.Itoa(c.status)
		}
		t.Run(label, func(t *testing.T) {
			f.hook = func(w http.ResponseWriter, r *http.Request) bool {
				if c.code == "" {
					w.WriteHeader(c.status)
					return true
				}
				msg := c.msg
				if msg == "" {
					msg = "message for " + c.code
				}
				fakeError(w, c.code, msg, c.retry)
				return true
			}
			err := v.Put(t.Context(), name, bytes.NewReader([]byte("x")), 1)
			for _, chk := range c.checks {
				chk(t, err)
			}
			for _, s := range c.text {
				if err == nil || !strings.Contains(err.Error(), s) {
					t.Errorf("err = %v; want it to mention %q", err, s)
				}
			}
			if err != nil && strings.Contains(err.Error(), f.cred.Reveal()) {
				t.Errorf("error holds the credential: %v", err)
			}
		})
	}
	f.hook = nil
	// HEAD has no body: a 401 still tells the user to re-enroll.
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusUnauthorized)
		return true
	}
	if _, err := v.Stat(t.Context(), name); !errors.Is(err, store.ErrDenied) || !strings.Contains(err.Error(), "re-enroll") {
		t.Errorf("Stat with 401 = %v; want ErrDenied telling to re-enroll", err)
	}
}

func permanent2(t *testing.T, err error) {
	if !store.IsPermanent(err) {
		t.Errorf("err = %v; want permanent", err)
	}
}

func TestVaultBadCredential(t *testing.T) {
	f, srv := newFakeVault(t, true)
	cfg := f.config(t, srv)
	other, _, _, _ := vaultapi.NewCredential()
	cfg.Credential = other
	v, err := vaultclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	_, err = v.Stat(t.Context(), "config")
	if !errors.Is(err, store.ErrDenied) || strings.Contains(err.Error(), other.Reveal()) {
		t.Fatalf("Stat with an unknown credential = %v; want ErrDenied without the secret", err)
	}
	cfg.Credential = "cfa1_nonsense"
	if _, err := vaultclient.New(cfg); !errors.Is(err, store.ErrDenied) || strings.Contains(err.Error(), "nonsense") {
		t.Fatalf("NewVault with a malformed credential = %v; want ErrDenied without the value", err)
	}
	cfg.Credential = ""
	if _, err := vaultclient.New(cfg); !errors.Is(err, store.ErrDenied) {
		t.Fatalf("NewVault without a credential = %v; want ErrDenied", err)
	}
	// OpenProvider checks the credential at once (GET /v1/tenant).
	if _, err := storeurl.OpenProvider(t.Context(), srv.URL, storeurl.Options{Credential: other}); !errors.Is(err, store.ErrDenied) {
		t.Fatalf("OpenProvider with a wrong credential = %v; want ErrDenied", err)
	}
	s, err := storeurl.OpenProvider(t.Context(), srv.URL+"/", storeurl.Options{Credential: f.cred})
	if err != nil {
		t.Fatalf("OpenProvider: %v", err)
	}
	s.Close()
}

// TestVaultPutResend: the vault drops a kept-alive connection as the PUT
// arrives (an idle timeout racing the request); the client sends the
// request again on a new connection, from GetBody.
func TestVaultPutResend(t *testing.T) {
	f, srv := newFakeVault(t, true)
	v := newVaultClient(t, f, srv)
	ctx := t.Context()
	if _, err := v.Stat(ctx, "config"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat: %v", err) // opens the keep-alive connection
	}
	var attempts atomic.Int64
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut || attempts.Add(1) > 1 {
			return false
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return true
		}
		conn.Close()
		return true
	}
	body := bytes.Repeat([]byte{7}, 300_000)
	name := packName(body)
	if err := v.Put(ctx, name, bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatalf("Put across a dropped connection: %v", err)
	}
	if n := attempts.Load(); n != 2 {
		t.Fatalf("vault saw %d PUTs; want 2", n)
	}
	if got, err := readRange(ctx, v, name, 0, -1); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
}

// TestVaultRetryAfterBody: a connection that dies after the body went out
// is not resent by Go; store.Retry puts again from offset 0, and the second
// attempt's 409 after a lost 201 reads as ErrExists.
func TestVaultRetryResend(t *testing.T) {
	f, srv := newFakeVault(t, true)
	v := newVaultClient(t, f, srv)
	var attempts atomic.Int64
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut || attempts.Add(1) > 1 {
			return false
		}
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.objs[strings.TrimPrefix(r.URL.Path, vaultapi.RouteRepo)] = b // stored, then the reply is lost
		f.mu.Unlock()
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
		return true
	}
	rs := store.WithRetry(v, store.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond}, nil, nil)
	body := bytes.Repeat([]byte{9}, 200_000)
	name := packName(body)
	err := rs.Put(t.Context(), name, bytes.NewReader(body), int64(len(body)))
	if !errors.Is(err, store.ErrExists) || attempts.Load() != 2 {
		t.Fatalf("Put with a lost reply = %v after %d attempts; want ErrExists after 2", err, attempts.Load())
	}
	if got, _ := readRange(t.Context(), v, name, 0, -1); !bytes.Equal(got, body) {
		t.Fatal("stored body differs")
	}
}

// TestVaultPutEmptyAndExpect: a zero-length body is sent with
// Content-Length: 0; a non-empty one with Expect: 100-continue, and a
// refusal before the body costs no upload.
func TestVaultPutEmptyAndExpect(t *testing.T) {
	f, srv := newFakeVault(t, false)
	v := newVaultClient(t, f, srv)
	var seen []string
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut {
			seen = append(seen, fmt.Sprintf("%d %q %q", r.ContentLength, r.Header.Get("Content-Length"), r.Header.Get("Expect")))
		}
		return false
	}
	if err := v.Put(t.Context(), "keys/empty", bytes.NewReader(nil), 0); err != nil {
		t.Fatal(err)
	}
	if err := v.Put(t.Context(), "keys/full", bytes.NewReader([]byte("abc")), 3); err != nil {
		t.Fatal(err)
	}
	// Server-side, Go strips Expect after handling it; the length is what
	// the handler sees.
	if len(seen) != 2 || !strings.HasPrefix(seen[0], "0 ") || !strings.HasPrefix(seen[1], "3 ") {
		t.Fatalf("PUTs seen: %v", seen)
	}
	// The quota refusal comes before the body is read: the source is
	// never read when the vault answers before 100 Continue.
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut {
			fakeError(w, vaultapi.CodeQuotaExceeded, "quota 1.00 MiB exceeded", 0)
			return true
		}
		return false
	}
	src := &readCountingReaderAt{r: bytes.NewReader(make([]byte, 8<<20))}
	err := v.Put(t.Context(), "keys/big", src, 8<<20)
	var qe *store.QuotaError
	if !errors.As(err, &qe) {
		t.Fatalf("Put over quota = %v; want QuotaError", err)
	}
	if n := src.n.Load(); n > 1<<20 {
		t.Errorf("refused Put read %d bytes of its source; want (almost) none", n)
	}
}

type readCountingReaderAt struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *readCountingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

func TestVaultGetChecksContentRange(t *testing.T) {
	f, srv := newFakeVault(t, false)
	v := newVaultClient(t, f, srv)
	f.objs["keys/k"] = []byte("0123456789")
	for what, h := range map[string]func(w http.ResponseWriter){
		"wrong start": func(w http.ResponseWriter) {
			w.Header().Set("Content-Range", "bytes 0-3/10")
			w.WriteHeader(http.StatusPartialContent)
			io.WriteString(w, "0123")
		},
		"ignored range": func(w http.ResponseWriter) { io.WriteString(w, "0123456789") },
		"garbage":       func(w http.ResponseWriter) { w.Header().Set("Content-Range", "bytes x"); w.WriteHeader(206) },
		"short body": func(w http.ResponseWriter) {
			w.Header().Set("Content-Range", "bytes 2-5/10")
			w.Header().Set("Content-Length", "4")
			w.WriteHeader(http.StatusPartialContent)
			io.WriteString(w, "23")
		},
	} {
		f.hook = func(w http.ResponseWriter, r *http.Request) bool { h(w); return true }
		got, err := readRange(t.Context(), v, "keys/k", 2, 4)
		if err == nil {
			t.Errorf("%s: Get = %q, nil; want an error", what, got)
		}
		if what == "short body" && (store.IsPermanent(err) || !errors.Is(err, io.ErrUnexpectedEOF)) {
			t.Errorf("%s: Get = %v; want a transient unexpected EOF", what, err)
		}
	}
}

func TestVaultEnroll(t *testing.T) {
	f, srv := newFakeVault(t, true)
	cfg := f.config(t, srv)
	cfg.Credential = ""
	tok, _, _, _ := vaultapi.NewToken()
	f.tokens[tok.Reveal()] = ""
	cred, id, sha, _ := vaultapi.NewCredential()
	req := vaultapi.EnrollRequest{Token: tok, CredentialID: id, CredentialSHA256: hex.EncodeToString(sha[:]), Host: "web01"}
	for i := range 2 { // the same request again is idempotent
		resp, err := vaultclient.Enroll(t.Context(), cfg, req)
		if err != nil || resp.CredentialID != id || resp.TenantName != "acme" {
			t.Fatalf("Enroll #%d = %+v, %v", i, resp, err)
		}
	}
	if f.enrolls[0].Token.Reveal() != tok.Reveal() || f.enrolls[0].CredentialSHA256 != req.CredentialSHA256 {
		t.Fatalf("vault received %+v", f.enrolls[0])
	}
	_ = cred
	// Another credential with the used token: refused, permanent, no secret.
	_, id2, sha2, _ := vaultapi.NewCredential()
	req2 := vaultapi.EnrollRequest{Token: tok, CredentialID: id2, CredentialSHA256: hex.EncodeToString(sha2[:])}
	_, err := vaultclient.Enroll(t.Context(), cfg, req2)
	if err == nil || !store.IsPermanent(err) || !strings.Contains(err.Error(), "token_used") || strings.Contains(err.Error(), tok.Reveal()) ||
		strings.Count(err.Error(), "ask your provider") != 1 {
		t.Fatalf("Enroll with a used token = %v", err)
	}
	// Unknown/expired token.
	tok2, _, _, _ := vaultapi.NewToken()
	req2.Token = tok2
	if _, err := vaultclient.Enroll(t.Context(), cfg, req2); err == nil || !strings.Contains(err.Error(), "expired") || strings.Contains(err.Error(), tok2.Reveal()) {
		t.Fatalf("Enroll with an expired token = %v", err)
	}
}

func TestVaultTLS(t *testing.T) {
	f := &fakeVault{t: t, strict: true, limit: 3, objs: map[string][]byte{}, tokens: map[string]string{}}
	f.cred, _, _, _ = vaultapi.NewCredential()
	srv := httptest.NewTLSServer(f)
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	cfg := vaultclient.Config{BaseURL: u, Credential: f.cred}
	// Without the CA the certificate is refused.
	v, err := vaultclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Stat(t.Context(), "config"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat without the CA = %v; want a certificate error", err)
	}
	v.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.CAFile = ca
	if v, err = vaultclient.New(cfg); err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Stat(t.Context(), "config"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat with the CA = %v; want ErrNotFound", err)
	}
	// The same through COFFER_VAULT_CA.
	t.Setenv(vaultclient.EnvVaultCA, ca)
	s, err := storeurl.OpenProvider(t.Context(), srv.URL, storeurl.Options{Credential: f.cred})
	if err != nil {
		t.Fatalf("OpenProvider with COFFER_VAULT_CA: %v", err)
	}
	s.Close()
	// A file without a certificate is a clear error.
	if err := os.WriteFile(ca, []byte("nothing"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := vaultclient.New(cfg); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("NewVault with a bad CA file = %v", err)
	}
}

// TestVaultErrorMessageIsTerminalSafe: a vault (or whatever answers at its
// address) cannot reach the user's terminal with escape sequences, C1
// controls or bidi overrides through its error message, code or request ID.
func TestVaultErrorMessageIsTerminalSafe(t *testing.T) {
	f, srv := newFakeVault(t, true)
	v := newVaultClient(t, f, srv)
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		var b vaultapi.ErrorBody
		b.Error = vaultapi.ErrorDetail{Code: vaultapi.CodeTenantSuspended + "\u009b2J", RequestID: "req\x1b[31m",
			Message: "suspended\x1b]0;owned\x07 \u202eexe.txt\r\nfake line"}
		_ = json.NewEncoder(w).Encode(b)
		return true
	}
	err := v.Put(t.Context(), packName([]byte("x")), bytes.NewReader([]byte("x")), 1)
	if !errors.Is(err, store.ErrDenied) {
		t.Fatalf("err = %v; want ErrDenied", err)
	}
	msg := err.Error()
	for _, bad := range []string{"\x1b", "\x07", "\u202e", "\r", "\n", "\u009b"} {
		if strings.Contains(msg, bad) {
			t.Errorf("error %q holds %q", msg, bad)
		}
	}
	for _, want := range []string{`suspended\x1b]0;owned\x07`, `\u202eexe.txt`, `\x0d\x0afake line`, `req\x1b[31m`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not show %q as a visible escape", msg, want)
		}
	}
}

// TestVaultEnrollReplyIsTerminalSafe: the tenant name and IDs a vault
// answers enrollment with, which init prints, carry no terminal escapes.
func TestVaultEnrollReplyIsTerminalSafe(t *testing.T) {
	f, srv := newFakeVault(t, true)
	cfg := f.config(t, srv)
	cfg.Credential = ""
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != vaultapi.RouteEnroll {
			return false
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(vaultapi.EnrollResponse{TenantName: "acme\x1b[2J\u202e", TenantID: "id\x07", CredentialID: "c\x1b"})
		return true
	}
	tok, _, _, _ := vaultapi.NewToken()
	_, id, sha, _ := vaultapi.NewCredential()
	resp, err := vaultclient.Enroll(t.Context(), cfg, vaultapi.EnrollRequest{Token: tok, CredentialID: id, CredentialSHA256: hex.EncodeToString(sha[:])})
	if err != nil {
		t.Fatal(err)
	}
	if resp.TenantName != `acme\x1b[2J\u202e` || resp.TenantID != `id\x07` || resp.CredentialID != `c\x1b` {
		t.Fatalf("enroll reply %+v; want visible escapes", resp)
	}
}

// TestVaultPutMeta checks that a snapshot's sizes reach the vault in the
// Coffer-*-Bytes headers when put with metadata through the agent's
// decorators, and that a plain Put sends none.
func TestVaultPutMeta(t *testing.T) {
	f, srv := newFakeVault(t, false)
	var mu sync.Mutex
	seen := map[string][2]string{}
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut {
			mu.Lock()
			seen[r.URL.Path] = [2]string{r.Header.Get(vaultapi.HeaderLogicalBytes), r.Header.Get(vaultapi.HeaderDataBytes)}
			mu.Unlock()
		}
		return false
	}
	st := storeurl.Decorate(newVaultClient(t, f, srv), storeurl.Options{}).Retry
	body := store.Bytes("sealed snapshot")
	m := store.ObjectMeta{LogicalBytes: 10 << 30, DataBytes: 3 << 30}
	if err := store.PutWithMeta(t.Context(), st, "snapshots/a", body, int64(len(body)), m); err != nil {
		t.Fatalf("PutWithMeta: %v", err)
	}
	if err := st.Put(t.Context(), "snapshots/b", body, int64(len(body))); err != nil {
		t.Fatalf("Put: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := seen[vaultapi.RouteRepo+"snapshots/a"]; got != [2]string{"10737418240", "3221225472"} {
		t.Errorf("put with metadata sent sizes %q; want [10737418240 3221225472]", got)
	}
	if got := seen[vaultapi.RouteRepo+"snapshots/b"]; got != [2]string{} {
		t.Errorf("plain put sent sizes %q; want none", got)
	}
	if got, err := store.ReadAll(t.Context(), st, "snapshots/a"); err != nil || string(got) != string(body) {
		t.Errorf("the vault holds %q, %v", got, err)
	}
}
