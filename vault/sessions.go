package vault

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/maint"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/jobs"
)

// handleSession serves RouteSession (POST: start) and RouteSession/<id>
// (POST: heartbeat, DELETE: end).
func (s *Server) handleSession(w http.ResponseWriter, r *http.Request, path string) {
	id, hasID := strings.CutPrefix(path, vaultapi.RouteSession+"/")
	if hasID && !vaultapi.ValidID(id) {
		writeError(w, r, Errorf(http.StatusBadRequest, vaultapi.CodeBadPath, "malformed session id"))
		return
	}
	methods := []string{http.MethodPost}
	if hasID {
		methods = append(methods, http.MethodDelete)
	}
	if !allowMethods(w, r, methods...) {
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
	ctx := r.Context()
	switch {
	case !hasID:
		s.startSession(ctx, w, r, sw, p)
	case r.Method == http.MethodDelete:
		if _, err := jobs.UpdateSession(ctx, sw, p.TenantID, func(st *maint.GCState) (*maint.GCState, bool) { return st.End(id), true }); err != nil {
			writeError(w, r, s.apiError(r, err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		ok, err := jobs.UpdateSession(ctx, sw, p.TenantID, func(st *maint.GCState) (*maint.GCState, bool) { return st.Beat(id, s.now()) })
		switch {
		case err != nil:
			writeError(w, r, s.apiError(r, err))
		case !ok:
			writeError(w, r, Errorf(http.StatusNotFound, vaultapi.CodeNotFound, "no live session %s: it expired (no heartbeat for %s); start a new one", id, jobs.SessionTTL))
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}
}

func (s *Server) startSession(ctx context.Context, w http.ResponseWriter, r *http.Request, sw store.Swapper, p *Principal) {
	id, err := vaultapi.NewID()
	if err != nil {
		writeError(w, r, s.apiError(r, err))
		return
	}
	now := s.now().UTC()
	var unusable []string
	_, err = jobs.UpdateSession(ctx, sw, p.TenantID, func(st *maint.GCState) (*maint.GCState, bool) {
		unusable = st.Unusable()
		return st.Begin(id, now), true
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		writeError(w, r, s.apiError(r, err))
		return
	}
	if unusable == nil {
		unusable = []string{}
	}
	writeJSON(w, r, http.StatusOK, vaultapi.SessionInfo{ID: id, Started: now, Heartbeat: max(1, int(s.lim.SessionHeartbeat/time.Second)), Unusable: unusable})
}
