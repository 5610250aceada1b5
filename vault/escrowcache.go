package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// escrowCache keeps the vault's escrow recipient, or its absence, for
// EscrowCacheTTL: GET /v1/escrow needs no credential, and the recipient is
// created once and rarely changes, so the store is asked at most once per
// TTL however often the route is called. Store failures are not kept.
type escrowCache struct {
	mu          sync.Mutex
	at          time.Time
	recipient   string
	fingerprint string
	absent      bool
}

// escrowRecipient answers from the cache, asking src when the entry is
// older than ttl. Callers wait for one another's store round trip.
func (c *escrowCache) escrowRecipient(ctx context.Context, src Escrow, now time.Time, ttl time.Duration) (string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || now.Sub(c.at) >= ttl {
		rcpt, fp, err := src.EscrowRecipient(ctx)
		switch {
		case errors.Is(err, store.ErrNotFound):
			c.recipient, c.fingerprint, c.absent = "", "", true
		case err != nil:
			return "", "", err
		default:
			c.recipient, c.fingerprint, c.absent = rcpt, fp, false
		}
		c.at = now
	}
	if c.absent {
		return "", "", store.ErrNotFound
	}
	return c.recipient, c.fingerprint, nil
}

// admitAnonymous applies the per-address rate of unauthenticated lookups
// (GET /v1/escrow). On refusal it has answered 429 and returns false.
func (s *Server) admitAnonymous(w http.ResponseWriter, r *http.Request) bool {
	ok, wait := s.limits.anonymous(remoteIP(r))
	if ok {
		return true
	}
	s.m.throttled.WithLabelValues("", "anonymous").Inc()
	sec := max(1, retrySeconds(wait))
	writeError(w, r, &Error{Status: http.StatusTooManyRequests, Code: vaultapi.CodeRateLimited, RetryAfter: time.Duration(sec) * time.Second,
		Message: fmt.Sprintf("over %g escrow requests/s from this address; retry after %ds", s.lim.AnonRPS, sec)})
	return false
}
