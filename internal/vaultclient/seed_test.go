package vaultclient_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/seedtest"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// seedRoutes is a small model of the vault's seed routes for the client
// tests: one tenant's signing key (the first stays) and its seeds.
type seedRoutes struct {
	mu       sync.Mutex
	key      string
	seeds    map[string]*vaultapi.SeedInfo
	bodies   map[string][]byte
	sigs     map[string]string
	requests []string
	// fail, when set, answers the next requests with this code.
	fail []string
}

func newSeedRoutes() *seedRoutes {
	return &seedRoutes{seeds: map[string]*vaultapi.SeedInfo{}, bodies: map[string][]byte{}, sigs: map[string]string{}}
}

func (s *seedRoutes) hook(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path != vaultapi.RouteSigningKey && !strings.HasPrefix(r.URL.Path, vaultapi.RouteSeeds) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.URL.Path)
	if len(s.fail) > 0 {
		code := s.fail[0]
		s.fail = s.fail[1:]
		fakeError(w, code, "injected "+code, 0)
		return true
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, vaultapi.RouteSeeds), "/")
	id, sub, _ := strings.Cut(rest, "/")
	switch {
	case r.URL.Path == vaultapi.RouteSigningKey && r.Method == http.MethodPost:
		s.signingKey(w, r)
	case rest == "" && r.Method == http.MethodGet:
		list := struct {
			Seeds []vaultapi.SeedInfo `json:"seeds"`
		}{Seeds: []vaultapi.SeedInfo{}}
		for _, si := range s.seeds {
			list.Seeds = append(list.Seeds, *si)
		}
		_ = json.NewEncoder(w).Encode(list)
	case sub == "" && r.Method == http.MethodPut:
		s.register(w, r, id)
	case s.seeds[id] == nil:
		fakeError(w, vaultapi.CodeNotFound, "no seed "+id+" registered", 0)
	case sub == "" && r.Method == http.MethodGet:
		_ = json.NewEncoder(w).Encode(s.seeds[id])
	case sub == "manifest" && r.Method == http.MethodGet:
		_, _ = w.Write(s.bodies[id])
	case sub == "confirm" && r.Method == http.MethodPost:
		si := s.seeds[id]
		if si.Report == nil || !si.Report.Clean {
			fakeError(w, vaultapi.CodeBadRequest, "seed is travelling, without a clean import report: keep the source until it has one", 0)
			return true
		}
		now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
		si.Confirmed = &now
		_ = json.NewEncoder(w).Encode(si)
	default:
		fakeError(w, vaultapi.CodeMethodNotAllowed, "method not allowed", 0)
	}
	return true
}

func (s *seedRoutes) signingKey(w http.ResponseWriter, r *http.Request) {
	var req vaultapi.SigningKeyRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fakeError(w, vaultapi.CodeBadRequest, "bad json", 0)
		return
	}
	if s.key != "" && s.key != req.PublicKey {
		fakeError(w, vaultapi.CodeSigningKeyMismatch, `tenant "acme" has signing key x already`, 0)
		return
	}
	s.key = req.PublicKey
	w.WriteHeader(http.StatusNoContent)
}

func (s *seedRoutes) register(w http.ResponseWriter, r *http.Request, id string) {
	body, _ := io.ReadAll(r.Body)
	sig := r.Header.Get(vaultapi.HeaderSeedSignature)
	m, err := seed.Parse(body)
	if err != nil || m.ID != id {
		fakeError(w, vaultapi.CodeBadSeed, "bad manifest", 0)
		return
	}
	if s.key == "" {
		fakeError(w, vaultapi.CodeNoSigningKey, `tenant "acme" has no signing key yet`, 0)
		return
	}
	if err := seed.Verify(s.key, body, []byte(sig)); err != nil {
		fakeError(w, vaultapi.CodeBadSeed, "signature: "+err.Error(), 0)
		return
	}
	if si := s.seeds[id]; si != nil {
		_ = json.NewEncoder(w).Encode(si)
		return
	}
	for _, si := range s.seeds {
		if si.State == vaultapi.SeedTravelling {
			fakeError(w, vaultapi.CodeSeedInTransit, "tenant acme has seed "+si.ID[:12]+" in transit", 0)
			return
		}
	}
	si := &vaultapi.SeedInfo{ID: id, State: vaultapi.SeedTravelling, Created: m.Created, Host: m.Host, Objects: len(m.Objects),
		Bytes: m.Bytes(), Snapshots: m.Snapshots, Signer: crypto.SigningKeyFingerprint(m.Signer)}
	s.seeds[id], s.bodies[id], s.sigs[id] = si, body, sig
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(si)
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// signedManifest returns a valid manifest of one pack and one snapshot,
// its bytes and its signature file.
func signedManifest(t *testing.T, k *crypto.SigningKey, id string) (*seed.Manifest, []byte, []byte) {
	t.Helper()
	pack, snap := hexSum([]byte("pack "+id)), hexSum([]byte("snap "+id))
	objs := []seed.File{{Name: "data/" + pack[:2] + "/" + pack, Size: 10, SHA256: pack}, {Name: "snapshots/" + snap, Size: 10, SHA256: snap}}
	m := &seed.Manifest{Format: seed.Format, ID: id, Tenant: strings.Repeat("a", 24), TenantName: "acme", Repository: strings.Repeat("cd", 32),
		Created: time.Date(2026, 12, 5, 18, 0, 0, 0, time.UTC), Host: "agent-1", Signer: k.Public(), Snapshots: []string{snap},
		Objects: objs, Parity: seed.Parity{Share: 0.05, Layout: json.RawMessage(`{}`),
			Files: []seed.File{{Name: seed.ParityName(0), Size: 10, SHA256: strings.Repeat("0", 64)}}}}
	body, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seed.Parse(body); err != nil {
		t.Fatal(err)
	}
	return m, body, seed.Sign(k, body)
}

// The seed calls against a model of the routes: the signing key once (the
// same again is fine, another refused), a seed registered with its
// signature (again: the same record), listed, read, its manifest checked;
// confirm refused without a clean report, accepted with one.
func TestSeedCalls(t *testing.T) {
	f, srv := newFakeVault(t, true)
	routes := newSeedRoutes()
	f.hook = routes.hook
	v := newVaultClient(t, f, srv)
	ctx := t.Context()
	k := seedtest.Key(t)
	id := strings.Repeat("5e", 32)
	m, body, sig := signedManifest(t, k, id)

	if _, err := v.RegisterSeed(ctx, id, body, sig); !errors.Is(err, store.ErrExists) && !store.IsPermanent(err) {
		t.Fatalf("register before the key: %v; want a permanent error", err)
	} else if errors.Is(err, store.ErrExists) || !strings.Contains(err.Error(), "no signing key") {
		t.Fatalf("register before the key: %v; want no_signing_key, never ErrExists", err)
	}
	for range 2 {
		if err := v.RegisterSigningKey(ctx, k.Public()); err != nil {
			t.Fatalf("RegisterSigningKey: %v", err)
		}
	}
	err := v.RegisterSigningKey(ctx, seedtest.Key(t).Public())
	var ve *vaultclient.Error
	if !errors.As(err, &ve) || ve.Code != vaultapi.CodeSigningKeyMismatch || !store.IsPermanent(err) || errors.Is(err, store.ErrExists) {
		t.Fatalf("another key: %v; want a permanent signing_key_mismatch", err)
	}
	if err := v.RegisterSigningKey(ctx, "ed25519:nothex"); err == nil || len(routes.requests) != 4 {
		t.Fatalf("a malformed key: %v after %d requests; want an error before sending", err, len(routes.requests))
	}

	for range 2 {
		info, err := v.RegisterSeed(ctx, id, body, sig)
		if err != nil || info.ID != id || info.State != vaultapi.SeedTravelling || info.Objects != 2 {
			t.Fatalf("RegisterSeed: %+v %v", info, err)
		}
	}
	if routes.sigs[id] != strings.TrimSpace(string(sig)) {
		t.Fatalf("signature header %q, want SEED.sig's hex", routes.sigs[id])
	}
	other := strings.Repeat("6f", 32)
	_, obody, osig := signedManifest(t, k, other)
	if _, err := v.RegisterSeed(ctx, other, obody, osig); !errors.As(err, &ve) || ve.Code != vaultapi.CodeSeedInTransit || !store.IsPermanent(err) {
		t.Fatalf("a second seed in transit: %v; want a permanent seed_in_transit", err)
	}
	list, err := v.Seeds(ctx)
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("Seeds: %+v %v", list, err)
	}
	info, err := v.Seed(ctx, id)
	if err != nil || info.ID != id || info.Report != nil {
		t.Fatalf("Seed: %+v %v", info, err)
	}
	if _, err := v.Seed(ctx, other); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Seed of an unknown seed: %v; want ErrNotFound", err)
	}
	gm, gb, err := v.SeedManifest(ctx, id)
	if err != nil || gm.ID != id || string(gb) != string(body) || len(gm.Packs()) != len(m.Packs()) {
		t.Fatalf("SeedManifest: %v", err)
	}
	if _, err := v.ConfirmSeed(ctx, id); !errors.As(err, &ve) || !strings.Contains(err.Error(), "keep the source") {
		t.Fatalf("confirm without a report: %v", err)
	}
	routes.seeds[id].State = vaultapi.SeedImported
	routes.seeds[id].Report = &vaultapi.SeedReport{Seed: id, Objects: 2, Uploaded: 2, Clean: true}
	if info, err := v.ConfirmSeed(ctx, id); err != nil || info.Confirmed == nil {
		t.Fatalf("confirm: %+v %v", info, err)
	}
	for _, bad := range []string{"", "5E" + id[2:], id[:63], "../" + id[3:]} {
		if _, err := v.Seed(ctx, bad); err == nil || !store.IsPermanent(err) {
			t.Errorf("Seed(%q) = %v; want a permanent error before sending", bad, err)
		}
	}
}

// Replies that do not hold what was asked are permanent errors naming the
// problem: a manifest of another seed or that does not parse, a record of
// another seed, an unknown state, a body that is not JSON.
func TestSeedBadReplies(t *testing.T) {
	f, srv := newFakeVault(t, true)
	id := strings.Repeat("5e", 32)
	_, otherBody, _ := signedManifest(t, seedtest.Key(t), strings.Repeat("6f", 32))
	var reply string
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, vaultapi.RouteSeeds) {
			return false
		}
		_, _ = w.Write([]byte(reply))
		return true
	}
	v := newVaultClient(t, f, srv)
	ctx := t.Context()
	good := `{"id":"` + id + `","state":"travelling","objects":2,"bytes":20,"snapshots":[]}`
	reply = good
	if _, err := v.Seed(ctx, id); err != nil {
		t.Fatalf("a good record: %v", err)
	}
	for _, c := range []struct{ reply, want string }{
		{strings.Replace(good, id, strings.Repeat("6f", 32), 1), "answered about seed"},
		{strings.Replace(good, "travelling", "lost", 1), "unknown state"},
		{`{"id":`, "not valid JSON"},
		{good + good, "data after"},
		{strings.Replace(good, `"snapshots":[]`, `"snapshots":["x"]`, 1), "snapshot id"},
		{strings.Replace(good, `"snapshots":[]`, `"report":{"seed":"`+strings.Repeat("6f", 32)+`"}`, 1), "import report is of seed"},
	} {
		reply = c.reply
		if _, err := v.Seed(ctx, id); err == nil || !store.IsPermanent(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("reply %.60s: %v; want a permanent error saying %q", c.reply, err, c.want)
		}
	}
	reply = string(otherBody)
	if _, _, err := v.SeedManifest(ctx, id); err == nil || !store.IsPermanent(err) || !strings.Contains(err.Error(), "got seed") {
		t.Errorf("another seed's manifest: %v", err)
	}
	reply = `{"format":"coffer-seed/1"}`
	if _, _, err := v.SeedManifest(ctx, id); !errors.Is(err, seed.ErrBadManifest) || !store.IsPermanent(err) {
		t.Errorf("a manifest that does not parse: %v; want ErrBadManifest", err)
	}
	reply = `{"seeds":[` + good + `,` + good + `]}`
	if _, err := v.Seeds(ctx); err == nil || !strings.Contains(err.Error(), "listed twice") {
		t.Errorf("a seed listed twice: %v", err)
	}
	reply = `{}`
	if _, err := v.Seeds(ctx); err == nil || !strings.Contains(err.Error(), `no "seeds"`) {
		t.Errorf("no seeds array: %v", err)
	}
}

// With Config.Retry the seed calls retry a vault that is away (503) and
// then succeed; without it they try once.
func TestSeedCallsRetry(t *testing.T) {
	f, srv := newFakeVault(t, true)
	routes := newSeedRoutes()
	f.hook = routes.hook
	cfg := f.config(t, srv)
	cfg.Retry = store.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond}
	v, err := vaultclient.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	routes.fail = []string{vaultapi.CodeStoreUnavailable, vaultapi.CodeInternal}
	if _, err := v.Seeds(t.Context()); err != nil || len(routes.requests) != 3 {
		t.Fatalf("Seeds after two failures: %v after %d requests; want success on the third", err, len(routes.requests))
	}
	once := newVaultClient(t, f, srv)
	routes.fail = []string{vaultapi.CodeInternal}
	if _, err := once.Seeds(t.Context()); err == nil {
		t.Fatal("without a retry policy a failure is returned")
	}
}

// A read refused with seed_pending is a permanent ErrSeedPending carrying
// the vault's message (which names the seed), never ErrNotFound or
// ErrExists.
func TestSeedPendingMapping(t *testing.T) {
	f, srv := newFakeVault(t, true)
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		fakeError(w, vaultapi.CodeSeedPending, "pack abc travels on seed 5e5e5e5e5e5e exported 2026-12-05 that your provider has not imported yet", 0)
		return true
	}
	v := newVaultClient(t, f, srv)
	pack := hexSum([]byte("p"))
	_, err := v.Stat(t.Context(), "data/"+pack[:2]+"/"+pack)
	if !errors.Is(err, vaultclient.ErrSeedPending) || !store.IsPermanent(err) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) {
		t.Fatalf("HEAD of a pending pack: %v", err)
	}
	err = v.Get(t.Context(), "data/"+pack[:2]+"/"+pack, 0, -1, func(io.Reader) error { return nil })
	if !errors.Is(err, vaultclient.ErrSeedPending) || !strings.Contains(err.Error(), "seed 5e5e5e5e5e5e") {
		t.Fatalf("GET of a pending pack: %v", err)
	}
}

// FuzzSeedReplies: the vault's seed records are outside input. The parsers
// never panic; what they accept has valid IDs and a known state, and its
// strings are terminal-safe.
func FuzzSeedReplies(f *testing.F) {
	id := strings.Repeat("5e", 32)
	good := `{"id":"` + id + `","state":"imported","objects":2,"bytes":20,"snapshots":["` + strings.Repeat("ab", 32) + `"],` +
		`"host":"h\u001b[31m","report":{"seed":"` + id + `","objects":2,"uploaded":1,"present":1,"repaired":[{"name":"data/x","problem":"missing","rebuilt":true}],"clean":true}}`
	for _, s := range []string{good, `{"seeds":[` + good + `]}`, `{"seeds":[]}`, `{}`, `null`, `{"id":"` + id + `","state":"travelling","objects":-1}`, "[1,2",
		`{"id":"` + id + `","state":"cancelled","objects":0,"cancelled":"2026-12-05T10:00:00Z","reason":"lost\u001b[2J\nin the mail"}`,
		`{"id":"` + id + `","state":"lost","objects":0}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(s *vaultapi.SeedInfo) {
			if !vaultclient.ValidSeedID(s.ID) || (s.State != vaultapi.SeedTravelling && s.State != vaultapi.SeedImported && s.State != vaultapi.SeedCancelled) {
				t.Fatalf("accepted %+v", s)
			}
			if strings.ContainsAny(s.Host+s.Signer+s.Reason, "\x1b\r\n") {
				t.Fatalf("accepted unsafe text %q", s.Host+s.Signer+s.Reason)
			}
			if s.Report != nil {
				for _, r := range s.Report.Repaired {
					if strings.ContainsAny(r.Name+r.Problem, "\x1b\r\n") {
						t.Fatalf("accepted unsafe text %q", r.Name+r.Problem)
					}
				}
			}
		}
		if s, err := vaultclient.ParseSeedInfo(b); err == nil {
			check(s)
		}
		if list, err := vaultclient.ParseSeedList(b); err == nil {
			for i := range list {
				check(&list[i])
			}
		}
	})
}
