package vault

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/registry"
)

// SeedRegistry is what the seed routes need of the registry: the tenant's
// current record (its signing key) and the one update of that key.
// *registry.Registry implements it.
type SeedRegistry interface {
	Tenant(ctx context.Context, id string) (*registry.Tenant, error)
	SetSigningKey(ctx context.Context, id, public string) (*registry.Tenant, error)
}

// seedSigLen is the length of SEED.sig's hex: an Ed25519 signature.
const seedSigLen = 128

func (s *Server) noSeeds() *Error {
	return Errorf(http.StatusServiceUnavailable, vaultapi.CodeStoreUnavailable, "seeds are not available on this server")
}

// handleSigningKey serves POST RouteSigningKey: the tenant's public seed
// signing key, learned once.
func (s *Server) handleSigningKey(w http.ResponseWriter, r *http.Request) {
	p := s.admit(w, r)
	if p == nil {
		return
	}
	var req vaultapi.SigningKeyRequest
	if e := readSmallJSON(w, r, 4<<10, &req); e != nil {
		writeError(w, r, e)
		return
	}
	if s.seeds == nil {
		writeError(w, r, s.noSeeds())
		return
	}
	t, err := s.seeds.SetSigningKey(r.Context(), p.TenantID, req.PublicKey)
	if err != nil {
		writeError(w, r, s.apiError(r, err))
		return
	}
	writeJSON(w, r, http.StatusOK, vaultapi.SigningKeyRequest{PublicKey: t.SigningKey})
}

// seedRoute is a parsed RouteSeeds path: the list, a seed, or one of its
// sub-resources ("manifest", "confirm", "cancel", "lost").
type seedRoute struct {
	id, sub string
}

// parseSeedRoute splits path (under RouteSeeds) and validates the seed id.
func parseSeedRoute(path string) (seedRoute, *Error) {
	rest := strings.TrimPrefix(strings.TrimPrefix(path, vaultapi.RouteSeeds), "/")
	if rest == "" {
		return seedRoute{}, nil
	}
	id, sub, _ := strings.Cut(rest, "/")
	if !vaultapi.ValidSHA256Hex(id) {
		return seedRoute{}, Errorf(http.StatusBadRequest, vaultapi.CodeBadPath, "malformed seed id: want 64 lower-case hex digits")
	}
	switch sub {
	case "", "manifest", "confirm", "cancel", "lost":
		return seedRoute{id: id, sub: sub}, nil
	}
	return seedRoute{}, Errorf(http.StatusNotFound, vaultapi.CodeNotFound, "no such route: %s", path)
}

// methods are the methods a seed route allows.
func (sr seedRoute) methods() []string {
	switch {
	case sr.id == "", sr.sub == "manifest", sr.sub == "lost":
		return []string{http.MethodGet}
	case sr.sub == "confirm", sr.sub == "cancel":
		return []string{http.MethodPost}
	}
	return []string{http.MethodGet, http.MethodPut}
}

// handleSeeds serves RouteSeeds and
// RouteSeeds/<id>[/manifest|/confirm|/cancel|/lost].
func (s *Server) handleSeeds(w http.ResponseWriter, r *http.Request, path string) {
	sr, e := parseSeedRoute(path)
	if e != nil {
		writeError(w, r, e)
		return
	}
	if !allowMethods(w, r, sr.methods()...) {
		return
	}
	p := s.admit(w, r)
	if p == nil {
		return
	}
	sw := s.state
	if sw == nil {
		writeError(w, r, Errorf(http.StatusInternalServerError, vaultapi.CodeInternal, "the vault's store does not support conditional writes"))
		return
	}
	switch {
	case sr.id == "":
		s.listSeeds(w, r, sw, p)
	case sr.sub == "manifest":
		s.seedManifest(w, r, sw, p, sr.id)
	case sr.sub == "confirm":
		info, err := jobs.ConfirmSeed(r.Context(), sw, p.TenantID, sr.id, s.now())
		s.answerSeed(w, r, http.StatusOK, info, err)
	case sr.sub == "cancel":
		s.cancelSeed(w, r, sw, p, sr.id)
	case sr.sub == "lost":
		s.lostPacks(w, r, sw, p, sr.id)
	case r.Method == http.MethodPut:
		s.registerSeed(w, r, sw, p, sr.id)
	default:
		s.getSeed(w, r, sw, p, sr.id)
	}
}

func (s *Server) answerSeed(w http.ResponseWriter, r *http.Request, status int, info *vaultapi.SeedInfo, err error) {
	if err != nil {
		writeError(w, r, s.apiError(r, err))
		return
	}
	writeJSON(w, r, status, info)
}

func (s *Server) listSeeds(w http.ResponseWriter, r *http.Request, sw store.Swapper, p *Principal) {
	book, err := jobs.LoadSeedBook(r.Context(), sw, p.TenantID)
	if err != nil {
		writeError(w, r, s.apiError(r, err))
		return
	}
	seeds := book.Seeds
	if seeds == nil {
		seeds = []vaultapi.SeedInfo{}
	}
	writeJSON(w, r, http.StatusOK, map[string][]vaultapi.SeedInfo{"seeds": seeds})
}

// findSeed returns the tenant's seed id, or answers 404.
func (s *Server) findSeed(w http.ResponseWriter, r *http.Request, sw store.Swapper, p *Principal, id string) *vaultapi.SeedInfo {
	book, err := jobs.LoadSeedBook(r.Context(), sw, p.TenantID)
	if err != nil {
		writeError(w, r, s.apiError(r, err))
		return nil
	}
	info := book.Find(id)
	if info == nil {
		writeError(w, r, Errorf(http.StatusNotFound, vaultapi.CodeNotFound, "tenant %s has no seed %s registered: coffer seed export registers it", p.TenantName, id[:12]))
	}
	return info
}

func (s *Server) getSeed(w http.ResponseWriter, r *http.Request, sw store.Swapper, p *Principal, id string) {
	if info := s.findSeed(w, r, sw, p, id); info != nil {
		writeJSON(w, r, http.StatusOK, info)
	}
}

// seedManifest serves the registered SEED.json, its signature in
// HeaderSeedSignature.
func (s *Server) seedManifest(w http.ResponseWriter, r *http.Request, sw store.Swapper, p *Principal, id string) {
	if s.findSeed(w, r, sw, p, id) == nil {
		return
	}
	_, body, sig, err := jobs.SeedManifest(r.Context(), s.data, p.TenantID, id)
	if err != nil {
		writeError(w, r, s.apiError(r, err))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set(vaultapi.HeaderSeedSignature, strings.TrimSpace(string(sig)))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	n, _ := w.Write(body)
	reqInfoFrom(r.Context()).bytesOut.Add(int64(n))
}

// seedSignature reads HeaderSeedSignature: one value, SEED.sig's hex.
func seedSignature(r *http.Request) ([]byte, *Error) {
	vals := r.Header.Values(vaultapi.HeaderSeedSignature)
	if len(vals) != 1 || len(vals[0]) != seedSigLen || !vaultapi.ValidSHA256Hex(vals[0][:64]) || !vaultapi.ValidSHA256Hex(vals[0][64:]) {
		return nil, Errorf(http.StatusBadRequest, vaultapi.CodeBadRequest,
			"a seed registration needs one %s header: the %d hex digits of the seed's SEED.sig", vaultapi.HeaderSeedSignature, seedSigLen)
	}
	return []byte(vals[0]), nil
}

// readManifest reads a registered manifest's body. It may be tens of
// megabytes, so like an upload it needs a Content-Length and is held to
// the upload rate floor instead of the body deadline of small requests.
func (s *Server) readManifest(w http.ResponseWriter, r *http.Request) ([]byte, *Error) {
	if len(r.TransferEncoding) > 0 || r.Header.Get("Content-Length") == "" || r.ContentLength < 0 {
		return nil, Errorf(http.StatusLengthRequired, vaultapi.CodeLengthRequired, "a seed registration needs a Content-Length header (no chunked encoding)")
	}
	if r.ContentLength > vaultapi.MaxSeedManifest {
		return nil, Errorf(http.StatusRequestEntityTooLarge, vaultapi.CodeTooLarge, "a seed manifest of %d bytes is over the limit of %d bytes", r.ContentLength, int64(vaultapi.MaxSeedManifest))
	}
	vr := newVerifyReader(r.Body, r.ContentLength, nil)
	info := reqInfoFrom(r.Context())
	vr.progress = func(n int) { info.bytesIn.Add(int64(n)) }
	vr.startDeadlines(http.NewResponseController(w), s.now, s.lim.MinUploadRate, s.lim.RateWindow)
	body, err := io.ReadAll(vr)
	switch {
	case err == nil:
		return body, nil
	case isTimeout(err):
		w.Header().Set("Connection", "close")
		return nil, Errorf(http.StatusRequestTimeout, vaultapi.CodeTooSlow,
			"the seed manifest arrived at under %d bytes/s over %s; nothing was registered", s.lim.MinUploadRate, s.lim.RateWindow)
	}
	w.Header().Set("Connection", "close")
	return nil, Errorf(http.StatusBadRequest, vaultapi.CodeTruncated, "the seed manifest ended after %d of %d bytes; nothing was registered", vr.n, r.ContentLength)
}

// registerSeed serves PUT RouteSeeds/<id>: 201 with the new record, 200
// when the seed was registered already.
func (s *Server) registerSeed(w http.ResponseWriter, r *http.Request, sw store.Swapper, p *Principal, id string) {
	sig, e := seedSignature(r)
	if e != nil {
		writeError(w, r, e)
		return
	}
	body, e := s.readManifest(w, r)
	if e != nil {
		writeError(w, r, e)
		return
	}
	if s.seeds == nil {
		writeError(w, r, s.noSeeds())
		return
	}
	var head struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(body, &head) == nil && head.ID != id {
		writeError(w, r, Errorf(http.StatusUnprocessableEntity, vaultapi.CodeBadSeed,
			"the manifest is of seed %q, not of seed %s named in the request path: register each seed under its own id", clipString(head.ID), id[:12]))
		return
	}
	ctx := r.Context()
	t, err := s.seeds.Tenant(ctx, p.TenantID)
	if err != nil {
		writeError(w, r, s.apiError(r, err))
		return
	}
	book, err := jobs.LoadSeedBook(ctx, sw, p.TenantID)
	if err != nil {
		writeError(w, r, s.apiError(r, err))
		return
	}
	status := http.StatusCreated
	if book.Find(id) != nil {
		status = http.StatusOK
	}
	info, err := jobs.RegisterSeed(ctx, sw, s.data, t, body, sig, s.now())
	s.answerSeed(w, r, status, info, err)
}

// pendingPack answers a read of pack name that the vault does not hold:
// 409 seed_pending when it travels on a seed of the tenant in transit,
// else 404.
func (s *Server) pendingPack(ctx context.Context, r *http.Request, p *Principal, name string) *Error {
	notFound := Errorf(http.StatusNotFound, vaultapi.CodeNotFound, "no object %s", name)
	if s.state == nil {
		return notFound
	}
	ts, err := jobs.LoadTenantSeeds(ctx, s.state, s.packs, p.TenantID)
	if err != nil {
		return s.apiError(r, err)
	}
	id := vaultapi.NameDigest(name)
	seed, err := ts.PendingPack(ctx, id)
	switch {
	case err != nil:
		return s.apiError(r, err)
	case seed == nil:
		return notFound
	}
	return s.apiError(r, jobs.PackPendingError(id, seed))
}

// seedExcuses checks a receipt whose packs missing the vault lacks: nil
// when its seed travels and holds them all, else the 422 that says why.
func (s *Server) seedExcuses(ctx context.Context, r *http.Request, p *Principal, rc *vaultapi.Receipt, missing []string) *Error {
	refuse := func(why string) *Error {
		return Errorf(http.StatusUnprocessableEntity, vaultapi.CodeBadReceipt,
			"the receipt of snapshot %s names %d packs the vault does not hold (%s)%s: upload them first", rc.Snapshot, len(missing), firstFew(missing), why)
	}
	if rc.Seed == "" || s.state == nil {
		return refuse("")
	}
	ts, err := jobs.LoadTenantSeeds(ctx, s.state, s.packs, p.TenantID)
	if err != nil {
		return s.apiError(r, err)
	}
	_, err = ts.Holding(ctx, rc.Seed, missing)
	var refusal *jobs.SeedRefusal
	switch {
	case err == nil:
		return nil
	case errors.As(err, &refusal):
		return refuse(", and " + refusal.Reason)
	}
	return s.apiError(r, err)
}

// cancelSeed serves POST RouteSeeds/<id>/cancel: the tenant declares its
// seed lost (200 with the record after).
func (s *Server) cancelSeed(w http.ResponseWriter, r *http.Request, sw store.Swapper, p *Principal, id string) {
	var req vaultapi.SeedCancelRequest
	if e := readSmallJSON(w, r, 4<<10, &req); e != nil {
		writeError(w, r, e)
		return
	}
	if s.findSeed(w, r, sw, p, id) == nil {
		return
	}
	info, err := jobs.CancelSeed(r.Context(), sw, s.data, p.TenantID, id, req.Reason, s.now())
	s.answerSeed(w, r, http.StatusOK, info, err)
}

// lostPacks serves GET RouteSeeds/<id>/lost: the packs a cancelled seed
// held that the vault did not when it was cancelled (400 while the seed
// is not cancelled).
func (s *Server) lostPacks(w http.ResponseWriter, r *http.Request, sw store.Swapper, p *Principal, id string) {
	info := s.findSeed(w, r, sw, p, id)
	if info == nil {
		return
	}
	if info.State != vaultapi.SeedCancelled {
		writeError(w, r, Errorf(http.StatusBadRequest, vaultapi.CodeBadRequest, "seed %s is %s, not cancelled: it has no lost packs", id[:12], info.State))
		return
	}
	lost, err := jobs.LostPacks(r.Context(), s.data, p.TenantID, id)
	if err != nil {
		writeError(w, r, s.apiError(r, err))
		return
	}
	writeJSON(w, r, http.StatusOK, lost)
}
