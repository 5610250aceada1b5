package vault

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/seedtest"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/registry"
)

// FuzzSeedRoute: any path under /v1/seeds parses or is refused; an
// accepted one names a valid seed id (or the list) and allows a method.
func FuzzSeedRoute(f *testing.F) {
	id := strings.Repeat("ab", 32)
	for _, p := range []string{"/v1/seeds", "/v1/seeds/", "/v1/seeds/" + id, "/v1/seeds/" + id + "/manifest",
		"/v1/seeds/" + id + "/confirm", "/v1/seeds/" + id + "/cancel", "/v1/seeds/" + id + "/lost", "/v1/seeds/" + id + "/x", "/v1/seeds/..", "/v1/seeds/" + strings.ToUpper(id), "/v1/seeds/" + id + "/manifest/x"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, path string) {
		sr, e := parseSeedRoute(path)
		if e != nil {
			if e.Status != http.StatusBadRequest && e.Status != http.StatusNotFound {
				t.Fatalf("%q: status %d", path, e.Status)
			}
			return
		}
		if sr.id != "" && !vaultapi.ValidSHA256Hex(sr.id) {
			t.Fatalf("%q: accepted id %q", path, sr.id)
		}
		if sr.id == "" && sr.sub != "" || len(sr.methods()) == 0 {
			t.Fatalf("%q: %+v", path, sr)
		}
	})
}

// fakeSeedRegistry is one tenant's record, with a signing key.
type fakeSeedRegistry struct{ t *registry.Tenant }

func (r fakeSeedRegistry) Tenant(ctx context.Context, id string) (*registry.Tenant, error) {
	if id != r.t.ID {
		return nil, vaultapi.Errorf(vaultapi.CodeNotFound, "no tenant %s", id)
	}
	cp := *r.t
	return &cp, nil
}

func (r fakeSeedRegistry) SetSigningKey(ctx context.Context, id, public string) (*registry.Tenant, error) {
	return r.Tenant(ctx, id)
}

// FuzzSeedRegistration sends any body and signature header to PUT
// /v1/seeds/<id>: the answer is a registration of a manifest that verifies
// under the tenant's key with the path's id, or a 4xx refusal; never a
// 5xx or a panic.
func FuzzSeedRegistration(f *testing.F) {
	key := seedtest.Key(f)
	good := seedtest.New(f, key, tenantA, strings.Repeat("1", 64))
	id := good.Manifest.ID
	f.Add(good.Body, good.SigHex(), id)
	f.Add(bytes.Replace(good.Body, []byte("agent-1"), []byte("agent-2"), 1), good.SigHex(), id)
	f.Add(good.Body, strings.Repeat("0", 128), id)
	f.Add([]byte(`{"id":"`+id+`"}`), good.SigHex(), id)
	f.Add([]byte("garbage"), "zz", strings.Repeat("c", 64))
	f.Add(good.Body, good.SigHex(), strings.Repeat("c", 64))
	data, err := store.OpenLocal(f.TempDir(), true)
	if err != nil {
		f.Fatal(err)
	}
	auth := &fakeAuth{creds: map[string]*Principal{}, revoked: map[string]bool{}}
	cred, _ := auth.add(Principal{TenantID: tenantA, TenantName: "acme"})
	lim := DefaultLimits()
	lim.TenantRPS, lim.TenantBurst = 1e9, 1e9 // the fuzzer is not an agent to throttle
	srv, err := New(Config{Data: data, Auth: auth, Limits: lim,
		Seeds: fakeSeedRegistry{&registry.Tenant{ID: tenantA, Name: "acme", SigningKey: key.Public()}}})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, body []byte, sig, pathID string) {
		if !vaultapi.ValidSHA256Hex(pathID) {
			pathID = id
		}
		r := httptest.NewRequest("PUT", vaultapi.RouteSeeds+"/"+pathID, bytes.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+cred.Reveal())
		r.Header.Set(vaultapi.HeaderSeedSignature, sig)
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusCreated, http.StatusOK:
			m, err := seed.Parse(body)
			if err != nil || m.ID != pathID || seed.Verify(key.Public(), body, []byte(sig)) != nil {
				t.Fatalf("registered a manifest that does not verify: %d %s", w.Code, w.Body)
			}
		case http.StatusBadRequest, http.StatusConflict, http.StatusUnprocessableEntity:
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}
