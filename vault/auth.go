package vault

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// maxAuthCache bounds the authentication cache.
const maxAuthCache = 10000

// authCache remembers successful authentications for a short TTL, keyed by
// the SHA-256 of the whole bearer (so a wrong secret never hits an entry).
type authCache struct {
	ttl time.Duration
	now func() time.Time
	mu  sync.Mutex
	m   map[[32]byte]authEntry
}

type authEntry struct {
	p       Principal
	expires time.Time
}

func newAuthCache(ttl time.Duration, now func() time.Time) *authCache {
	return &authCache{ttl: ttl, now: now, m: map[[32]byte]authEntry{}}
}

func (c *authCache) get(k [32]byte) (*Principal, bool) {
	if c.ttl <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return nil, false
	}
	if !c.now().Before(e.expires) {
		delete(c.m, k)
		return nil, false
	}
	p := e.p
	return &p, true
}

func (c *authCache) put(k [32]byte, p *Principal) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.m) >= maxAuthCache {
		for key, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, key)
			}
		}
		if len(c.m) >= maxAuthCache {
			clear(c.m)
		}
	}
	c.m[k] = authEntry{p: *p, expires: now.Add(c.ttl)}
}

func remoteIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// authenticate checks the request's bearer credential and the tenant's
// state. On refusal it has already answered and returns nil.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *Principal {
	ip := remoteIP(r)
	if blocked, wait := s.limits.authBlocked(ip); blocked {
		s.m.throttled.WithLabelValues("", "auth_failures").Inc()
		writeError(w, r, &Error{Status: http.StatusTooManyRequests, Code: vaultapi.CodeTooManyAuthFails,
			Message: fmt.Sprintf("too many failed authentications from this address; retry after %ds", retrySeconds(wait)), RetryAfter: wait})
		return nil
	}
	fail := func(e *Error) *Principal {
		if e.Status == http.StatusUnauthorized {
			s.limits.authFailure(ip)
			w.Header().Set("WWW-Authenticate", bearerChallenge)
		}
		s.m.authFailures.WithLabelValues(e.Code).Inc()
		writeError(w, r, e)
		return nil
	}
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return fail(Errorf(http.StatusUnauthorized, vaultapi.CodeUnauthenticated, "missing credential: send Authorization: Bearer <agent credential>"))
	}
	invalid := Errorf(http.StatusUnauthorized, vaultapi.CodeInvalidCredential, "invalid credential")
	if len(vals) > 1 {
		return fail(invalid)
	}
	raw, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok {
		return fail(invalid)
	}
	bearer := vaultapi.Secret(raw)
	if _, _, err := vaultapi.ParseCredential(bearer.Reveal()); err != nil {
		return fail(invalid)
	}
	key := sha256.Sum256([]byte(bearer.Reveal()))
	p, ok := s.cache.get(key)
	if !ok {
		var err error
		p, err = s.auth.Authenticate(r.Context(), bearer)
		if err != nil {
			e := s.apiError(r, err)
			if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
				return fail(e)
			}
			writeError(w, r, e)
			return nil
		}
		if p == nil || !vaultapi.ValidTenantID(p.TenantID) {
			s.log.Error("authenticator returned no valid tenant", "req_id", reqInfoFrom(r.Context()).id)
			writeError(w, r, Errorf(http.StatusInternalServerError, vaultapi.CodeInternal, "internal error"))
			return nil
		}
		s.cache.put(key, p)
	}
	reqInfoFrom(r.Context()).tenant = p.TenantID
	if p.Suspended {
		msg := p.SuspendedMessage
		if msg == "" {
			msg = fmt.Sprintf("tenant %s is suspended by your provider", p.TenantName)
		}
		return fail(Errorf(http.StatusForbidden, vaultapi.CodeTenantSuspended, "%s", msg))
	}
	markAuthenticated(r)
	return p
}

// admit authenticates and applies the tenant's request rate.
// bearerChallenge is the WWW-Authenticate value of every 401 (RFC 9110
// requires one), from the repository API and from enrollment alike.
const bearerChallenge = `Bearer realm="cofferd"`

func (s *Server) admit(w http.ResponseWriter, r *http.Request) *Principal {
	p := s.authenticate(w, r)
	if p == nil {
		return nil
	}
	if ok, wait := s.limits.allow(p.TenantID); !ok {
		s.m.throttled.WithLabelValues(p.TenantID, "rate").Inc()
		sec := max(1, retrySeconds(wait))
		writeError(w, r, &Error{Status: http.StatusTooManyRequests, Code: vaultapi.CodeRateLimited,
			Message:    fmt.Sprintf("tenant %s: over %g requests/s; retry after %ds", p.TenantName, s.lim.TenantRPS, sec),
			RetryAfter: time.Duration(sec) * time.Second})
		return nil
	}
	return p
}
