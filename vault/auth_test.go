package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// stateServer is a Server over the real registry and ledger, on loopback:
// every request comes from the same address.
type stateServer struct {
	t    *testing.T
	url  string
	reg  *registry.Registry
	data store.Store
	srv  *Server
}

func newStateServer(t *testing.T, lim Limits) *stateServer {
	t.Helper()
	data, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(data, nil)
	if err != nil {
		t.Fatal(err)
	}
	led, err := ledger.New(data, data, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Data: data, Limits: lim}
	(&State{Registry: reg, Ledger: led}).Configure(&cfg)
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &stateServer{t: t, url: ts.URL, reg: reg, data: data, srv: srv}
}

// call sends one request; auth is the whole Authorization value ("" for none).
func (s *stateServer) call(method, path, auth string, body []byte) (*http.Response, vaultapi.ErrorDetail) {
	s.t.Helper()
	r, _ := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb vaultapi.ErrorBody
	if resp.StatusCode >= 400 {
		_ = json.NewDecoder(resp.Body).Decode(&eb)
	}
	return resp, eb.Error
}

func (s *stateServer) enroll(tok vaultapi.Secret) (vaultapi.Secret, *http.Response, vaultapi.ErrorDetail) {
	cred, id, sum, _ := vaultapi.NewCredential()
	body, _ := vaultapi.EnrollRequest{Token: tok, CredentialID: id, CredentialSHA256: hex.EncodeToString(sum[:]), Host: "h1"}.Encode()
	resp, e := s.call("POST", "/v1/enroll", "", body)
	return cred, resp, e
}

func (s *stateServer) repoListing() string {
	var names []string
	_ = s.data.List(context.Background(), "repos/", func(fi store.Info) error {
		names = append(names, fi.Name+" "+strconv.FormatInt(fi.Size, 10))
		return nil
	})
	return strings.Join(names, "\n")
}

// TestValidCredentialServedFromLockedAddress: many bad credentials from one
// address (a TLS-terminating proxy that every agent shares) lock it for bad
// attempts only; a valid agent and a valid enrollment from it are served.
func TestValidCredentialServedFromLockedAddress(t *testing.T) {
	lim := DefaultLimits()
	lim.AuthCacheTTL = 0   // every valid request is checked against the store
	lim.AuthFailRPS = 0.05 // the bucket does not refill during the test
	s := newStateServer(t, lim)
	ctx := context.Background()
	tenant, tok, _, err := s.reg.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	cred, resp, e := s.enroll(tok)
	if resp.StatusCode != 201 {
		t.Fatalf("enroll: %d %+v", resp.StatusCode, e)
	}
	id, _, _ := vaultapi.ParseCredential(cred.Reveal())
	wrongSecret := cred.Reveal()[:len(cred.Reveal())-4] + "AAAA"
	before := s.repoListing()
	var last *http.Response
	for i := 0; i < 45; i++ {
		auth := ""
		switch i % 3 {
		case 0:
			other, _, _, _ := vaultapi.NewCredential()
			auth = "Bearer " + other.Reveal()
		case 1:
			auth = "Bearer " + wrongSecret
		}
		pack := randBytes(100)
		last, e = s.call("PUT", "/v1/repo/"+packName(pack), auth, pack)
	}
	if last.StatusCode != 429 || e.Code != vaultapi.CodeTooManyAuthFails || !strings.Contains(e.Message, "too many failed authentications") ||
		last.Header.Get("Retry-After") == "" || e.RetryAfterSeconds < 1 {
		t.Fatalf("bad attempt from a locked address: %d %v %+v", last.StatusCode, last.Header, e)
	}
	if after := s.repoListing(); after != before {
		t.Fatalf("bad attempts stored something:\n%s\n%s", before, after)
	}
	// The agent behind the same address is served: read and write.
	if resp, e := s.call("GET", "/v1/tenant", "Bearer "+cred.Reveal(), nil); resp.StatusCode != 200 {
		t.Fatalf("valid agent from the locked address: %d %+v", resp.StatusCode, e)
	}
	pack := randBytes(1000)
	if resp, e := s.call("PUT", "/v1/repo/"+packName(pack), "Bearer "+cred.Reveal(), pack); resp.StatusCode != 201 {
		t.Fatalf("valid upload from the locked address: %d %+v", resp.StatusCode, e)
	}
	if _, err := s.data.Stat(ctx, objectKey(tenant.ID, packName(pack))); err != nil {
		t.Fatalf("valid upload not stored: %v", err)
	}
	// So is a valid enrollment, while a bad token is still refused 429.
	tok2, _, err := s.reg.NewToken(ctx, tenant.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, resp, e := s.enroll(tok2); resp.StatusCode != 201 {
		t.Fatalf("valid enrollment from the locked address: %d %+v", resp.StatusCode, e)
	}
	badTok := vaultapi.Secret("cft1_" + id + "_" + strings.Repeat("A", 43))
	if _, resp, e := s.enroll(badTok); resp.StatusCode != 429 || e.Code != vaultapi.CodeTooManyAuthFails || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("bad token from the locked address: %d %+v", resp.StatusCode, e)
	}
	if resp, e := s.call("GET", "/v1/tenant", "Bearer "+wrongSecret, nil); resp.StatusCode != 429 || e.Code != vaultapi.CodeTooManyAuthFails {
		t.Fatalf("wrong secret after the valid requests: %d %+v", resp.StatusCode, e)
	}
}

// countingEnroller refuses every token but good, counting its calls.
type countingEnroller struct {
	mu    sync.Mutex
	good  string
	calls int
}

func (c *countingEnroller) Enroll(ctx context.Context, req vaultapi.EnrollRequest) (*vaultapi.EnrollResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if req.Token.Reveal() != c.good {
		return nil, vaultapi.Errorf(vaultapi.CodeInvalidCredential, "invalid enrollment token")
	}
	return &vaultapi.EnrollResponse{TenantID: tenantA, TenantName: "acme", CredentialID: req.CredentialID}, nil
}

// TestRefusalsCached: a flood of the same bad credential, revoked
// credential or enrollment token costs one authenticator call, not one
// each; a valid credential is unaffected.
func TestRefusalsCached(t *testing.T) {
	lim := DefaultLimits()
	lim.AuthCacheTTL = 0 // B's credential is not cached from before its revocation
	f := newFixture(t, lim)
	f.auth.mu.Lock()
	f.auth.revoked[f.idB] = true
	f.auth.calls = 0
	f.auth.mu.Unlock()
	unknown, _, _, _ := vaultapi.NewCredential()
	for _, bad := range []vaultapi.Secret{unknown, f.credB} {
		for i := 0; i < 50; i++ {
			w := f.do(req{method: "GET", target: "/v1/repo/config", cred: bad})
			if w.Code != 401 && w.Code != 429 {
				t.Fatalf("bad credential: %d %s", w.Code, w.Body.String())
			}
		}
	}
	if f.auth.calls != 2 {
		t.Fatalf("authenticator called %d times for 100 requests with 2 bad credentials, want 2", f.auth.calls)
	}
	if w := f.do(req{method: "GET", target: "/v1/repo/config", cred: f.credA}); w.Code != 200 {
		t.Fatalf("valid credential after the flood: %d %s", w.Code, w.Body.String())
	}

	good := "cft1_" + strings.Repeat("ab", 12) + "_" + strings.Repeat("B", 42) + "A"
	enr := &countingEnroller{good: good}
	f.srv.enroll = enr
	enrollBody := func(tok string) []byte {
		_, id, sum, _ := vaultapi.NewCredential()
		b, _ := vaultapi.EnrollRequest{Token: vaultapi.Secret(tok), CredentialID: id, CredentialSHA256: hex.EncodeToString(sum[:])}.Encode()
		return b
	}
	badTok := "cft1_" + strings.Repeat("cd", 12) + "_" + strings.Repeat("C", 42) + "A"
	for i := 0; i < 30; i++ {
		if w := f.do(req{method: "POST", target: "/v1/enroll", body: enrollBody(badTok)}); w.Code != 429 {
			t.Fatalf("bad token from a locked address: %d %s", w.Code, w.Body.String())
		}
	}
	if enr.calls != 1 {
		t.Fatalf("enroller called %d times for 30 requests with one bad token, want 1", enr.calls)
	}
	if w := f.do(req{method: "POST", target: "/v1/enroll", body: enrollBody(good)}); w.Code != 201 {
		t.Fatalf("valid token from a locked address: %d %s", w.Code, w.Body.String())
	}
}
