package vault

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// maxAuthCache bounds each authentication cache.
const maxAuthCache = 10000

// ttlCache remembers authentication results for a short TTL, keyed by the
// SHA-256 of the whole bearer (so a different secret never hits an entry).
type ttlCache[V any] struct {
	ttl time.Duration
	now func() time.Time
	mu  sync.Mutex
	m   map[[32]byte]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
}

func newTTLCache[V any](ttl time.Duration, now func() time.Time) *ttlCache[V] {
	return &ttlCache[V]{ttl: ttl, now: now, m: map[[32]byte]ttlEntry[V]{}}
}

// authCache keeps successful authentications.
type authCache = ttlCache[Principal]

func newAuthCache(ttl time.Duration, now func() time.Time) *authCache {
	return newTTLCache[Principal](ttl, now)
}

func (c *ttlCache[V]) get(k [32]byte) (V, bool) {
	var zero V
	if c.ttl <= 0 {
		return zero, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return zero, false
	}
	if !c.now().Before(e.expires) {
		delete(c.m, k)
		return zero, false
	}
	return e.v, true
}

func (c *ttlCache[V]) put(k [32]byte, v V) {
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
	c.m[k] = ttlEntry[V]{v: v, expires: now.Add(c.ttl)}
}

func remoteIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// authenticate checks the request's bearer credential and the tenant's
// state. On refusal it has already answered and returns nil. The credential
// is checked before the client address's failure budget, so a valid
// credential is served whatever others sent from the same address.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *Principal {
	bearer, e := bearerOf(r)
	if e != nil {
		s.refuseCredential(w, r, e)
		return nil
	}
	p, err := s.checkCredential(r.Context(), bearer)
	if err != nil {
		e := s.apiError(r, err)
		if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
			s.refuseCredential(w, r, e)
		} else {
			writeError(w, r, e)
		}
		return nil
	}
	if p == nil || !vaultapi.ValidTenantID(p.TenantID) {
		s.log.Error("authenticator returned no valid tenant", "req_id", reqInfoFrom(r.Context()).id)
		writeError(w, r, Errorf(http.StatusInternalServerError, vaultapi.CodeInternal, "internal error"))
		return nil
	}
	reqInfoFrom(r.Context()).tenant = p.TenantID
	if e := suspendedError(p); e != nil {
		s.refuseCredential(w, r, e)
		return nil
	}
	markAuthenticated(r)
	return p
}

// bearerOf returns the request's one well-formed bearer credential.
func bearerOf(r *http.Request) (vaultapi.Secret, *Error) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", Errorf(http.StatusUnauthorized, vaultapi.CodeUnauthenticated, "missing credential: send Authorization: Bearer <agent credential>")
	}
	invalid := Errorf(http.StatusUnauthorized, vaultapi.CodeInvalidCredential, "invalid credential")
	if len(vals) > 1 {
		return "", invalid
	}
	raw, ok := strings.CutPrefix(vals[0], "Bearer ")
	if !ok {
		return "", invalid
	}
	if _, _, err := vaultapi.ParseCredential(raw); err != nil {
		return "", invalid
	}
	return vaultapi.Secret(raw), nil
}

// checkCredential authenticates bearer through the caches: a success is
// reused for AuthCacheTTL, a refusal (401) for AuthFailCacheTTL, so a flood
// of the same bad credential costs no store round trip each.
func (s *Server) checkCredential(ctx context.Context, bearer vaultapi.Secret) (*Principal, error) {
	key := sha256.Sum256([]byte(bearer.Reveal()))
	if p, ok := s.cache.get(key); ok {
		cp := p
		return &cp, nil
	}
	if e, ok := s.failCache.get(key); ok {
		return nil, e
	}
	p, err := s.auth.Authenticate(ctx, bearer)
	if err != nil {
		if e := refusal(err); e != nil {
			s.failCache.put(key, e)
		}
		return nil, err
	}
	if p != nil && vaultapi.ValidTenantID(p.TenantID) {
		s.cache.put(key, *p)
	}
	return p, nil
}

// refusal returns err as an API error when it refuses the credential (401),
// else nil.
func refusal(err error) *Error {
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusUnauthorized {
		return e
	}
	var ve *vaultapi.Error
	if errors.As(err, &ve) {
		st := ve.Status
		if st == 0 {
			st = vaultapi.StatusOf(ve.Code)
		}
		if st == http.StatusUnauthorized {
			return &Error{Status: st, Code: ve.Code, Message: ve.Message}
		}
	}
	return nil
}

// enrollChecked runs an enrollment; a token refused (401) is refused again
// for AuthFailCacheTTL without asking the store.
func (s *Server) enrollChecked(ctx context.Context, req vaultapi.EnrollRequest) (*vaultapi.EnrollResponse, error) {
	key := sha256.Sum256([]byte("enroll\x00" + req.Token.Reveal()))
	if e, ok := s.failCache.get(key); ok {
		return nil, e
	}
	resp, err := s.enroll.Enroll(ctx, req)
	if e := refusal(err); e != nil {
		s.failCache.put(key, e)
	}
	return resp, err
}

// suspendedError is the refusal of a suspended tenant's principal, or nil.
func suspendedError(p *Principal) *Error {
	if !p.Suspended {
		return nil
	}
	msg := p.SuspendedMessage
	if msg == "" {
		msg = fmt.Sprintf("tenant %s is suspended by your provider", p.TenantName)
	}
	return Errorf(http.StatusForbidden, vaultapi.CodeTenantSuspended, "%s", msg)
}

// refuseCredential answers a refused credential or enrollment token. Each
// 401 spends one token of the client address's failure budget; once it is
// spent, refusals are answered 429 too_many_auth_failures with Retry-After
// instead. Valid credentials never reach here.
func (s *Server) refuseCredential(w http.ResponseWriter, r *http.Request, e *Error) {
	s.m.authFailures.WithLabelValues(e.Code).Inc()
	if e.Status == http.StatusUnauthorized {
		if ok, wait := s.limits.authFailure(remoteIP(r)); !ok {
			s.m.throttled.WithLabelValues("", "auth_failures").Inc()
			e = &Error{Status: http.StatusTooManyRequests, Code: vaultapi.CodeTooManyAuthFails, RetryAfter: wait,
				Message: fmt.Sprintf("too many failed authentications from this address; check the credential or token, and retry after %ds", retrySeconds(wait))}
		} else {
			w.Header().Set("WWW-Authenticate", bearerChallenge)
		}
	}
	writeError(w, r, e)
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
