package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// readBody reads a request body of at most max bytes.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, *Error) {
	if r.ContentLength > max {
		return nil, Errorf(http.StatusRequestEntityTooLarge, vaultapi.CodeTooLarge, "request body over %d bytes", max)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, Errorf(http.StatusRequestEntityTooLarge, vaultapi.CodeTooLarge, "request body over %d bytes", max)
		}
		if isTimeout(err) {
			w.Header().Set("Connection", "close")
			return nil, Errorf(http.StatusRequestTimeout, vaultapi.CodeTooSlow, "the request body did not arrive in time; send it with the request")
		}
		return nil, Errorf(http.StatusBadRequest, vaultapi.CodeTruncated, "request body could not be read")
	}
	return b, nil
}

// readSmallJSON decodes a small JSON body strictly (no unknown fields, no
// trailing data, at most max bytes).
func readSmallJSON(w http.ResponseWriter, r *http.Request, max int64, v any) *Error {
	b, e := readBody(w, r, max)
	if e != nil {
		return e
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		return Errorf(http.StatusBadRequest, vaultapi.CodeBadRequest, "malformed JSON request body")
	}
	return nil
}

func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	var req vaultapi.EnrollRequest
	if e := readSmallJSON(w, r, vaultapi.MaxEnrollBody, &req); e != nil {
		writeError(w, r, e)
		return
	}
	if _, _, err := vaultapi.ParseToken(req.Token.Reveal()); err != nil {
		s.refuseCredential(w, r, Errorf(http.StatusUnauthorized, vaultapi.CodeInvalidCredential, "invalid enrollment token"))
		return
	}
	if !vaultapi.ValidID(req.CredentialID) || !vaultapi.ValidSHA256Hex(req.CredentialSHA256) || len(req.Host) > 255 {
		writeError(w, r, Errorf(http.StatusBadRequest, vaultapi.CodeBadRequest, "enroll request needs credential_id (24 hex), credential_sha256 (64 hex) and a host name of at most 255 bytes"))
		return
	}
	if s.enroll == nil {
		writeError(w, r, Errorf(http.StatusServiceUnavailable, vaultapi.CodeStoreUnavailable, "enrollment is not available on this server"))
		return
	}
	resp, err := s.enrollChecked(r.Context(), req)
	if err != nil {
		if e := s.apiError(r, err); e.Status == http.StatusUnauthorized {
			s.refuseCredential(w, r, e)
		} else {
			writeError(w, r, e)
		}
		return
	}
	reqInfoFrom(r.Context()).tenant = resp.TenantID
	writeJSON(w, r, http.StatusCreated, resp)
}

func (s *Server) handleTenant(w http.ResponseWriter, r *http.Request) {
	p := s.admit(w, r)
	if p == nil {
		return
	}
	if s.tenants == nil {
		writeJSON(w, r, http.StatusOK, vaultapi.TenantInfo{ID: p.TenantID, Name: p.TenantName, State: vaultapi.StateActive})
		return
	}
	ti, err := s.tenants.TenantInfo(r.Context(), p.TenantID)
	if err != nil {
		writeError(w, r, s.apiError(r, err))
		return
	}
	writeJSON(w, r, http.StatusOK, ti)
}

func (s *Server) handleEscrow(w http.ResponseWriter, r *http.Request) {
	noEscrow := Errorf(http.StatusNotFound, vaultapi.CodeNoEscrow, "this vault offers no escrow key")
	if !s.admitAnonymous(w, r) {
		return
	}
	if s.escrow == nil {
		writeError(w, r, noEscrow)
		return
	}
	rcpt, fp, err := s.escrows.escrowRecipient(r.Context(), s.escrow, s.now, s.lim.EscrowCacheTTL)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, r, noEscrow)
		return
	}
	if err != nil {
		writeError(w, r, s.apiError(r, err))
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]string{"recipient": rcpt, "fingerprint": fp})
}

func (s *Server) handleEscrowSlot(w http.ResponseWriter, r *http.Request) {
	p := s.admit(w, r)
	if p == nil {
		return
	}
	var req struct {
		Slot string `json:"slot"`
	}
	if e := readSmallJSON(w, r, 4<<10, &req); e != nil {
		writeError(w, r, e)
		return
	}
	if k, err := vaultapi.ParseRepoName(req.Slot); err != nil || k != vaultapi.KindKey {
		writeError(w, r, Errorf(http.StatusBadRequest, vaultapi.CodeBadName, "slot must be keys/<sha256>"))
		return
	}
	if s.escrow == nil {
		writeError(w, r, Errorf(http.StatusNotFound, vaultapi.CodeNoEscrow, "this vault offers no escrow key"))
		return
	}
	if err := s.escrow.RecordEscrowSlot(r.Context(), p.TenantID, req.Slot); err != nil {
		writeError(w, r, s.apiError(r, err))
		return
	}
	writeJSON(w, r, http.StatusOK, map[string]string{"slot": req.Slot})
}
