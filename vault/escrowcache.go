package vault

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// escrowCache answers GET /v1/escrow, which needs no credential, without a
// store round trip per request. A recipient, once found, is kept for
// EscrowCacheTTL (it is created once and rarely changes). While there is
// none, or the store fails, nothing is kept, so `cofferd escrow init`
// reaches agents at once; but requests that arrive while a lookup is under
// way wait for the next one and share it, so a flood costs one store round
// trip at a time.
type escrowCache struct {
	mu sync.Mutex

	found                  bool
	foundAt                time.Time
	recipient, fingerprint string

	last escrowLookup // the newest lookup
}

type escrowLookup struct {
	done                   bool
	started                time.Time
	recipient, fingerprint string
	err                    error
}

// lookupTimeout bounds one escrow lookup, which serves every waiting request.
const lookupTimeout = 10 * time.Second

// escrowRecipient answers from the cache or from a lookup in src that
// started no earlier than this request arrived.
func (c *escrowCache) escrowRecipient(ctx context.Context, src Escrow, now func() time.Time, ttl time.Duration) (string, string, error) {
	arrived := now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.found && arrived.Sub(c.foundAt) < ttl {
		return c.recipient, c.fingerprint, nil
	}
	if c.last.done && !c.last.started.Before(arrived) {
		return c.last.recipient, c.last.fingerprint, c.last.err
	}
	// The lookup answers other requests too: it does not end with this one.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
	defer cancel()
	l := escrowLookup{done: true, started: now()}
	l.recipient, l.fingerprint, l.err = src.EscrowRecipient(lctx)
	c.last = l
	if l.err == nil {
		c.found, c.foundAt, c.recipient, c.fingerprint = true, l.started, l.recipient, l.fingerprint
	}
	return l.recipient, l.fingerprint, l.err
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
