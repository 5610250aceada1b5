package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// seedRoutes models the vault's seed routes for testVault (the real ones
// live in vault/): the tenant's signing key (the first stays), its seeds,
// their manifests, confirm. The zero value serves; off makes it an older
// vault that has none of the routes.
type seedRoutes struct {
	mu     sync.Mutex
	off    bool
	key    string
	seeds  map[string]*vaultapi.SeedInfo
	bodies map[string][]byte
	// manifestGets counts GET …/manifest requests.
	manifestGets int
}

func (s *seedRoutes) serve(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path != vaultapi.RouteSigningKey && !strings.HasPrefix(r.URL.Path, vaultapi.RouteSeeds) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.off {
		vaultErr(w, vaultapi.CodeNotFound, "no such route")
		return true
	}
	if s.seeds == nil {
		s.seeds, s.bodies = map[string]*vaultapi.SeedInfo{}, map[string][]byte{}
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, vaultapi.RouteSeeds), "/")
	id, sub, _ := strings.Cut(rest, "/")
	switch {
	case r.URL.Path == vaultapi.RouteSigningKey:
		var req vaultapi.SigningKeyRequest
		if json.NewDecoder(r.Body).Decode(&req) != nil || s.key != "" && s.key != req.PublicKey {
			vaultErr(w, vaultapi.CodeSigningKeyMismatch, "tenant acme has another signing key")
			return true
		}
		s.key = req.PublicKey
		w.WriteHeader(http.StatusNoContent)
	case rest == "":
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
		vaultErr(w, vaultapi.CodeNotFound, "no seed "+id+" registered")
	case sub == "":
		_ = json.NewEncoder(w).Encode(s.seeds[id])
	case sub == "manifest":
		s.manifestGets++
		_, _ = w.Write(s.bodies[id])
	case sub == "confirm":
		si := s.seeds[id]
		if si.Report == nil || !si.Report.Clean {
			vaultErr(w, vaultapi.CodeBadRequest, "seed "+id[:12]+" is "+si.State+", without a clean import report: keep the source until it has one")
			return true
		}
		now := time.Now().UTC()
		si.Confirmed = &now
		_ = json.NewEncoder(w).Encode(si)
	}
	return true
}

func (s *seedRoutes) register(w http.ResponseWriter, r *http.Request, id string) {
	body, _ := io.ReadAll(r.Body)
	m, err := seed.Parse(body)
	if err != nil || m.ID != id || s.key == "" || seed.Verify(s.key, body, []byte(r.Header.Get(vaultapi.HeaderSeedSignature))) != nil {
		vaultErr(w, vaultapi.CodeBadSeed, "the seed's manifest does not verify")
		return
	}
	if si := s.seeds[id]; si != nil {
		_ = json.NewEncoder(w).Encode(si)
		return
	}
	si := &vaultapi.SeedInfo{ID: id, State: vaultapi.SeedTravelling, Registered: time.Now().UTC(), Created: m.Created, Host: m.Host,
		Objects: len(m.Objects), Bytes: m.Bytes(), Snapshots: m.Snapshots, Signer: crypto.SigningKeyFingerprint(m.Signer)}
	s.seeds[id], s.bodies[id] = si, body
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(si)
}

// signingKey is the key the tenant registered.
func (s *seedRoutes) signingKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}
