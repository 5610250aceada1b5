package vault

import (
	"context"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// DirectDownloads is the policy of direct downloads: a GET of a pack range
// of at least MinBytes, from an agent that says it can follow one
// (vaultapi.HeaderAcceptDirect), is answered 307 with a presigned URL of
// the store that expires after Expiry. Authentication, the tenant's
// request rate and download slots, the seed checks and the range checks
// all happen first, exactly as for a proxied read; only the bytes go from
// the store to the agent without passing through cofferd. Packs are
// encrypted and authenticated by the agent, so the store sees nothing it
// does not already hold.
type DirectDownloads struct {
	Enabled  bool
	MinBytes int64         // smaller reads are proxied: a redirect costs a round trip (default 4 MiB)
	Expiry   time.Duration // life of a presigned URL (default 15 minutes, for clock skew with the store)
}

func (d DirectDownloads) withDefaults() DirectDownloads {
	if d.MinBytes <= 0 {
		d.MinBytes = 4 << 20
	}
	if d.Expiry <= 0 {
		d.Expiry = 15 * time.Minute
	}
	return d
}

// redirectDirect answers a pack read with a redirect to the store when the
// policy allows it, and reports whether it did. A URL the store cannot
// presign is logged and the read proxied.
func (s *Server) redirectDirect(ctx context.Context, w http.ResponseWriter, r *http.Request, p *Principal, kind vaultapi.Kind, key string, length int64) bool {
	if !s.direct.Enabled || r.Method != http.MethodGet || kind != vaultapi.KindPack || length < s.direct.MinBytes ||
		r.Header.Get(vaultapi.HeaderAcceptDirect) != "1" {
		return false
	}
	u, err := s.presign.PresignGet(ctx, key, s.direct.Expiry)
	if err != nil {
		s.log.Warn("direct download not presigned; proxying it", "req_id", reqInfoFrom(ctx).id, "tenant", p.TenantID, "err", err)
		return false
	}
	h := w.Header()
	for _, k := range []string{"Accept-Ranges", "ETag", "Content-Type", "Last-Modified", "Content-Range", "Content-Length"} {
		h.Del(k)
	}
	// The URL is a bearer capability for one encrypted object until it
	// expires: it goes in Location only, never in a log.
	h.Set("Location", u.String())
	w.WriteHeader(http.StatusTemporaryRedirect)
	if ts, ok := s.data.(*tenantStore); ok {
		ts.count(ctx, storeOpGet) // the agent's GET is a request to the store all the same
	}
	s.m.directReads.WithLabelValues(p.TenantID).Inc()
	s.m.directBytes.WithLabelValues(p.TenantID).Add(float64(length))
	return true
}
