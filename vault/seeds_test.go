package vault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/seedtest"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/registry"
)

// seedServer is a state server with two enrolled tenants, acme and bravo.
type seedServer struct {
	*stateServer
	acme, bravo *registry.Tenant
	credA       vaultapi.Secret
	credB       vaultapi.Secret
	key         *crypto.SigningKey // acme's
}

func newSeedServer(t *testing.T) *seedServer {
	t.Helper()
	lim := DefaultLimits()
	lim.AuthCacheTTL = 0 // suspension is seen at once
	s := &seedServer{stateServer: newStateServer(t, lim), key: seedtest.Key(t)}
	ctx := context.Background()
	enroll := func(name string) (*registry.Tenant, vaultapi.Secret) {
		tenant, tok, _, err := s.reg.CreateTenant(ctx, name, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		cred, resp, e := s.enroll(tok)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("enroll %s: %d %+v", name, resp.StatusCode, e)
		}
		return tenant, cred
	}
	s.acme, s.credA = enroll("acme")
	s.bravo, s.credB = enroll("bravo")
	return s
}

// reply is an answer: status, body, the signature header, the error.
type reply struct {
	status int
	body   []byte
	sig    string
	err    vaultapi.ErrorDetail
}

// send sends one request with cred and optional extra headers.
func (s *seedServer) send(method, path string, cred vaultapi.Secret, body []byte, hdr ...string) reply {
	s.t.Helper()
	r, _ := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if cred != "" {
		r.Header.Set("Authorization", "Bearer "+cred.Reveal())
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := reply{status: resp.StatusCode, body: b, sig: resp.Header.Get(vaultapi.HeaderSeedSignature)}
	if resp.StatusCode >= 400 && len(b) > 0 {
		var eb vaultapi.ErrorBody
		if err := json.Unmarshal(b, &eb); err != nil {
			s.t.Fatalf("%s %s: error body is not JSON: %q", method, path, b)
		}
		out.err = eb.Error
	}
	return out
}

func (s *seedServer) setKey(cred vaultapi.Secret, public string) reply {
	b, _ := json.Marshal(vaultapi.SigningKeyRequest{PublicKey: public})
	return s.send("POST", vaultapi.RouteSigningKey, cred, b)
}

func (s *seedServer) register(cred vaultapi.Secret, id string, sd *seedtest.Signed) reply {
	return s.send("PUT", vaultapi.RouteSeeds+"/"+id, cred, sd.Body, vaultapi.HeaderSeedSignature, sd.SigHex())
}

func want(t *testing.T, what string, r reply, status int, code string) {
	t.Helper()
	if r.status != status || r.err.Code != code {
		t.Fatalf("%s: %d %+v, want %d %s", what, r.status, r.err, status, code)
	}
}

func decode[T any](t *testing.T, r reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("reply %q: %v", r.body, err)
	}
	return v
}

// TestSigningKeyOnce: the first key stays; the same key again is fine,
// another is refused, a malformed one is a bad request.
func TestSigningKeyOnce(t *testing.T) {
	s := newSeedServer(t)
	pub := s.key.Public()
	for range 2 {
		r := s.setKey(s.credA, pub)
		if r.status != http.StatusOK || decode[vaultapi.SigningKeyRequest](t, r).PublicKey != pub {
			t.Fatalf("set key: %d %s", r.status, r.body)
		}
	}
	r := s.setKey(s.credA, seedtest.Key(t).Public())
	want(t, "another key", r, http.StatusConflict, vaultapi.CodeSigningKeyMismatch)
	if !strings.Contains(r.err.Message, crypto.SigningKeyFingerprint(pub)) {
		t.Errorf("mismatch message: %s", r.err.Message)
	}
	want(t, "malformed key", s.setKey(s.credA, "ed25519:zz"), http.StatusBadRequest, vaultapi.CodeBadRequest)
	want(t, "unknown field", s.send("POST", vaultapi.RouteSigningKey, s.credA, []byte(`{"public_key":"x","more":1}`)), http.StatusBadRequest, vaultapi.CodeBadRequest)
	want(t, "no credential", s.setKey("", pub), http.StatusUnauthorized, vaultapi.CodeUnauthenticated)
	want(t, "GET", s.send("GET", vaultapi.RouteSigningKey, s.credA, nil), http.StatusMethodNotAllowed, vaultapi.CodeMethodNotAllowed)
	t1, err := s.reg.Tenant(context.Background(), s.acme.ID)
	if err != nil || t1.SigningKey != pub {
		t.Fatalf("registry: %q %v", t1.SigningKey, err)
	}
	// bravo's key is its own.
	if r := s.setKey(s.credB, seedtest.Key(t).Public()); r.status != http.StatusOK {
		t.Fatalf("bravo: %d %+v", r.status, r.err)
	}
}

// TestSeedRegistration: register (201, then 200), the refusals (no key,
// bad path, id mismatch, tampered, another tenant's, a second in transit,
// no signature), the tenant scoping of every read, confirm after a clean
// import, suspension.
func TestSeedRegistration(t *testing.T) {
	s := newSeedServer(t)
	ctx := context.Background()
	s1 := seedtest.New(t, s.key, s.acme.ID, fakePack("a"), fakePack("b"))
	id := s1.Manifest.ID
	want(t, "before the key", s.register(s.credA, id, s1), http.StatusConflict, vaultapi.CodeNoSigningKey)
	if r := s.setKey(s.credA, s.key.Public()); r.status != http.StatusOK {
		t.Fatal(r.err)
	}

	r := s.register(s.credA, id, s1)
	info := decode[vaultapi.SeedInfo](t, r)
	if r.status != http.StatusCreated || info.ID != id || info.State != vaultapi.SeedTravelling || info.Objects != 2 {
		t.Fatalf("register: %d %s", r.status, r.body)
	}
	if r := s.register(s.credA, id, s1); r.status != http.StatusOK || decode[vaultapi.SeedInfo](t, r).ID != id {
		t.Fatalf("register again: %d %s", r.status, r.body)
	}

	want(t, "no signature", s.send("PUT", vaultapi.RouteSeeds+"/"+id, s.credA, s1.Body), http.StatusBadRequest, vaultapi.CodeBadRequest)
	want(t, "short signature", s.send("PUT", vaultapi.RouteSeeds+"/"+id, s.credA, s1.Body, vaultapi.HeaderSeedSignature, "abcd"), http.StatusBadRequest, vaultapi.CodeBadRequest)
	want(t, "bad id", s.register(s.credA, "ABC", s1), http.StatusBadRequest, vaultapi.CodeBadPath)
	want(t, "bad sub-route", s.send("GET", vaultapi.RouteSeeds+"/"+id+"/other", s.credA, nil), http.StatusNotFound, vaultapi.CodeNotFound)
	want(t, "DELETE", s.send("DELETE", vaultapi.RouteSeeds+"/"+id, s.credA, nil), http.StatusMethodNotAllowed, vaultapi.CodeMethodNotAllowed)
	s2 := seedtest.New(t, s.key, s.acme.ID, fakePack("c"))
	r = s.register(s.credA, id, s2)
	want(t, "id mismatch", r, http.StatusUnprocessableEntity, vaultapi.CodeBadSeed)
	tampered := *s2
	tampered.Body = bytes.Replace(s2.Body, []byte("agent-1"), []byte("agent-9"), 1)
	want(t, "tampered", s.register(s.credA, s2.Manifest.ID, &tampered), http.StatusUnprocessableEntity, vaultapi.CodeBadSeed)
	foreign := seedtest.New(t, s.key, s.bravo.ID, fakePack("d"))
	r = s.register(s.credA, foreign.Manifest.ID, foreign)
	want(t, "another tenant's seed", r, http.StatusUnprocessableEntity, vaultapi.CodeBadSeed)
	if !strings.Contains(r.err.Message, "belongs to tenant") {
		t.Errorf("another tenant's seed: %s", r.err.Message)
	}
	r = s.register(s.credA, s2.Manifest.ID, s2)
	want(t, "second in transit", r, http.StatusConflict, vaultapi.CodeSeedInTransit)
	if !strings.Contains(r.err.Message, id[:12]) {
		t.Errorf("in transit: %s", r.err.Message)
	}

	list := decode[map[string][]vaultapi.SeedInfo](t, s.send("GET", vaultapi.RouteSeeds, s.credA, nil))
	if len(list["seeds"]) != 1 || list["seeds"][0].ID != id {
		t.Fatalf("list: %+v", list)
	}
	if r := s.send("GET", vaultapi.RouteSeeds, s.credB, nil); r.status != http.StatusOK || string(r.body) != "{\"seeds\":[]}\n" {
		t.Fatalf("bravo's list: %d %s", r.status, r.body)
	}
	m := s.send("GET", vaultapi.RouteSeeds+"/"+id+"/manifest", s.credA, nil)
	if m.status != http.StatusOK || !bytes.Equal(m.body, s1.Body) || m.sig != s1.SigHex() {
		t.Fatalf("manifest: %d sig %q", m.status, m.sig)
	}
	for _, p := range []string{"", "/manifest"} {
		want(t, "bravo reads acme's seed"+p, s.send("GET", vaultapi.RouteSeeds+"/"+id+p, s.credB, nil), http.StatusNotFound, vaultapi.CodeNotFound)
	}
	want(t, "bravo confirms acme's seed", s.send("POST", vaultapi.RouteSeeds+"/"+id+"/confirm", s.credB, nil), http.StatusNotFound, vaultapi.CodeNotFound)

	want(t, "confirm before the import", s.send("POST", vaultapi.RouteSeeds+"/"+id+"/confirm", s.credA, nil), http.StatusBadRequest, vaultapi.CodeBadRequest)
	if _, err := jobs.MarkSeedImported(ctx, s.srv.state, s.acme.ID, id, &vaultapi.SeedReport{Seed: id, Clean: true, Objects: 2}); err != nil {
		t.Fatal(err)
	}
	got := decode[vaultapi.SeedInfo](t, s.send("GET", vaultapi.RouteSeeds+"/"+id, s.credA, nil))
	if got.State != vaultapi.SeedImported || got.Report == nil || !got.Report.Clean {
		t.Fatalf("after the import: %+v", got)
	}
	r = s.send("POST", vaultapi.RouteSeeds+"/"+id+"/confirm", s.credA, nil)
	if c := decode[vaultapi.SeedInfo](t, r); r.status != http.StatusOK || c.Confirmed == nil {
		t.Fatalf("confirm: %d %s", r.status, r.body)
	}
	if r := s.register(s.credA, s2.Manifest.ID, s2); r.status != http.StatusCreated {
		t.Fatalf("the next seed after the import: %d %+v", r.status, r.err)
	}

	if _, err := s.reg.Suspend(ctx, s.acme.ID, "unpaid"); err != nil {
		t.Fatal(err)
	}
	want(t, "suspended", s.send("GET", vaultapi.RouteSeeds, s.credA, nil), http.StatusForbidden, vaultapi.CodeTenantSuspended)
	want(t, "suspended key", s.setKey(s.credA, s.key.Public()), http.StatusForbidden, vaultapi.CodeTenantSuspended)
}

func fakePack(s string) string {
	sum := sha256.Sum256([]byte("seed pack " + s))
	return hex.EncodeToString(sum[:])
}

// seedReceipt is a receipt of a snapshot named packs, waiting on seed.
func seedReceipt(t *testing.T, seed string, packs ...string) (string, []byte) {
	t.Helper()
	sum := sha256.Sum256([]byte(seed + strings.Join(packs, ",")))
	rc := &vaultapi.Receipt{Version: 1, Snapshot: hex.EncodeToString(sum[:]), Name: "web01", Time: time.Now().UTC(),
		Source: "image", Disks: []vaultapi.ReceiptDisk{{Size: 1 << 20}}, Packs: slices.Sorted(slices.Values(packs)), Seed: seed}
	b, err := rc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return "receipts/" + sha(b), b
}

// TestSeedReceiptsAndPendingReads: a receipt whose missing packs travel
// on its seed is accepted, any other is refused saying why; a read of such
// a pack answers 409 seed_pending naming the seed (through the agent's
// client too) until the import, then the pack reads.
func TestSeedReceiptsAndPendingReads(t *testing.T) {
	s := newSeedServer(t)
	ctx := context.Background()
	if r := s.setKey(s.credA, s.key.Public()); r.status != http.StatusOK {
		t.Fatal(r.err)
	}
	stored, travels := randBytes(3000), randBytes(3000)
	p1, p2, p4 := sha(stored), sha(travels), fakePack("elsewhere")
	if r := s.send("PUT", "/v1/repo/"+packName(stored), s.credA, stored); r.status != http.StatusCreated {
		t.Fatal(r.err)
	}
	sd := seedtest.New(t, s.key, s.acme.ID, p2, fakePack("also"))
	id := sd.Manifest.ID
	if r := s.register(s.credA, id, sd); r.status != http.StatusCreated {
		t.Fatal(r.err)
	}
	put := func(name string, b []byte) reply { return s.send("PUT", "/v1/repo/"+name, s.credA, b) }

	if r := put(seedReceipt(t, id, p1, p2)); r.status != http.StatusCreated {
		t.Fatalf("a receipt whose missing pack travels on its seed: %d %+v", r.status, r.err)
	}
	for _, c := range []struct {
		what, seed, pack, msg string
	}{
		{"no seed named", "", p2, "does not hold (" + p2 + "): upload them first"},
		{"a pack not on the seed", id, p4, "seed " + id[:12] + " (in transit) does not hold 1 of them either (" + p4 + ")"},
		{"an unknown seed", strings.Repeat("7", 64), p2, "names seed 777777777777, which is not registered"},
	} {
		r := put(seedReceipt(t, c.seed, p1, c.pack))
		want(t, c.what, r, http.StatusUnprocessableEntity, vaultapi.CodeBadReceipt)
		if !strings.Contains(r.err.Message, c.msg) {
			t.Errorf("%s: %s", c.what, r.err.Message)
		}
	}

	pending := "pack " + p2 + " travels on seed " + id[:12] + " (exported 2026-12-01 from agent-1); the vault has not imported it yet: restores of snapshots that need it wait for `cofferd seed import`"
	r := s.send("GET", "/v1/repo/"+packName(travels), s.credA, nil)
	want(t, "GET a travelling pack", r, http.StatusConflict, vaultapi.CodeSeedPending)
	if r.err.Message != pending {
		t.Errorf("pending message:\n%s\nwant\n%s", r.err.Message, pending)
	}
	if r := s.send("HEAD", "/v1/repo/"+packName(travels), s.credA, nil); r.status != http.StatusConflict {
		t.Errorf("HEAD a travelling pack: %d", r.status)
	}
	want(t, "a pack on no seed", s.send("GET", "/v1/repo/data/"+p4[:2]+"/"+p4, s.credA, nil), http.StatusNotFound, vaultapi.CodeNotFound)
	want(t, "bravo reads acme's travelling pack", s.send("GET", "/v1/repo/"+packName(travels), s.credB, nil), http.StatusNotFound, vaultapi.CodeNotFound)

	// The agent's client keeps the message, as a permanent error (no
	// retries, not "exists").
	u, _ := url.Parse(s.url)
	v, err := vaultclient.New(vaultclient.Config{BaseURL: u, Credential: s.credA})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	_, err = store.ReadAll(ctx, v, packName(travels))
	var ve *vaultclient.Error
	if !errors.As(err, &ve) || ve.Code != vaultapi.CodeSeedPending || !strings.Contains(err.Error(), pending) ||
		!store.IsPermanent(err) || errors.Is(err, store.ErrExists) {
		t.Errorf("client GET: %v", err)
	}
	if _, err := v.Stat(ctx, packName(travels)); err == nil || !store.IsPermanent(err) || errors.Is(err, store.ErrExists) ||
		!strings.Contains(err.Error(), "travels on a seed") {
		t.Errorf("client HEAD: %v", err)
	}

	// The import: the pack arrives, the seed is marked.
	if _, err := jobs.MarkSeedImported(ctx, s.srv.state, s.acme.ID, id, &vaultapi.SeedReport{Clean: true}); err != nil {
		t.Fatal(err)
	}
	if r := s.send("PUT", "/v1/repo/"+packName(travels), s.credA, travels); r.status != http.StatusCreated {
		t.Fatal(r.err)
	}
	if r := s.send("GET", "/v1/repo/"+packName(travels), s.credA, nil); r.status != http.StatusOK || !bytes.Equal(r.body, travels) {
		t.Fatalf("after the import: %d %+v", r.status, r.err)
	}
	r = put(seedReceipt(t, id, p1, fakePack("also")))
	want(t, "after the import, a seed pack never uploaded", r, http.StatusUnprocessableEntity, vaultapi.CodeBadReceipt)
	if !strings.Contains(r.err.Message, "imported already") {
		t.Errorf("after the import: %s", r.err.Message)
	}
}
