package xenapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
)

// maxRPCBody caps one JSON-RPC answer (get_all_records of a large pool
// stays far below it); a variable so tests can lower it.
var maxRPCBody int64 = 64 << 20

// apiVersion is the version login_with_password announces.
const apiVersion = "2.21"

// maxMasterRedirects bounds how often Login follows HOST_IS_SLAVE.
const maxMasterRedirects = 2

// Session is a logged-in XenAPI session on one host (the pool master).
// It is safe for concurrent use.
type Session struct {
	ep      endpoint
	ref     Ref         // secret: never printed; set once by Login
	closed  atomic.Bool // logged out
	http    *http.Client
	rpcURL  string
	clock   clock.Clock
	timeout time.Duration // per RPC
	nextID  atomic.Int64
}

// Login logs in to the pool: session.login_with_password(user, password,
// "2.21", originator). When the host answers HOST_IS_SLAVE, Login logs in to
// the master address the error names instead, with the same scheme and the
// port of cfg.URL (or the port the address carries), at most twice.
func Login(ctx context.Context, cfg Config) (*Session, error) {
	ep, err := parseEndpoint(cfg.URL, cfg.AllowPlainLoopback)
	if err != nil {
		return nil, err
	}
	hc, err := newHTTPClient(cfg)
	if err != nil {
		return nil, err
	}
	originator := cfg.Originator
	if originator == "" {
		originator = defaultOriginator
	}
	s := &Session{http: hc, clock: clock.Or(cfg.Clock), timeout: cfg.HTTPTimeout}
	if s.timeout <= 0 {
		s.timeout = defaultTimeout
	}
	for redirects := 0; ; redirects++ {
		s.setHost(ep)
		raw, err := s.rpc(ctx, "session.login_with_password", cfg.User, cfg.Password, apiVersion, originator)
		if err == nil {
			return s.loggedIn(raw, cfg.User)
		}
		var xe *Error
		switch {
		case errors.As(err, &xe) && xe.Code == ErrAuthFailed:
			return nil, fmt.Errorf("xenapi: %s refused the user name or password for %q: check --xen-user and the password (%w)", ep.host, cfg.User, xe)
		case errors.As(err, &xe) && xe.Code == ErrHostIsSlave && redirects < maxMasterRedirects:
			if len(xe.Params) == 0 {
				return nil, fmt.Errorf("xenapi: %s is not the pool master and did not name the master", ep.host)
			}
			if ep, err = ep.withHost(xe.Params[0]); err != nil {
				return nil, err
			}
			if ep.scheme == "http" && !isLoopback(ep.host) {
				return nil, fmt.Errorf("xenapi: the pool master %s is not a loopback host, and plain http goes only to loopback: use https", ep.host)
			}
		case errors.As(err, &xe) && xe.Code == ErrHostIsSlave:
			return nil, fmt.Errorf("xenapi: login was redirected to a pool master more than %d times (last %s): give the master's address", maxMasterRedirects, ep.host)
		default:
			return nil, err
		}
	}
}

func (s *Session) setHost(ep endpoint) {
	s.ep = ep
	s.rpcURL = ep.base() + "/jsonrpc"
}

func (s *Session) loggedIn(raw json.RawMessage, user string) (*Session, error) {
	var ref string
	if err := unmarshal(raw, &ref); err != nil || !validRef(Ref(ref)) || Ref(ref) == NullRef {
		return nil, fmt.Errorf("xenapi: %s answered the login of %q with something that is not a session reference", s.ep.host, user)
	}
	s.ref = Ref(ref)
	return s, nil
}

func newHTTPClient(cfg Config) (*http.Client, error) {
	verify, err := newVerifier(cfg)
	if err != nil {
		return nil, err
	}
	timeout := cfg.HTTPTimeout
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	tr := &http.Transport{
		DialTLSContext:        dialTLS(verify),
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     false,
	}
	allowPlain := cfg.AllowPlainLoopback
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error { return checkRedirect(req, via, allowPlain) },
	}, nil
}

// checkRedirect follows one redirect (a host that cannot see the SR sends
// the transfer to one that can), to https or to plain loopback when allowed.
func checkRedirect(req *http.Request, via []*http.Request, allowPlain bool) error {
	if len(via) > 1 {
		return errors.New("xenapi: the host redirected the transfer more than once")
	}
	u := req.URL
	if u.Scheme == "https" || (u.Scheme == "http" && allowPlain && isLoopback(u.Hostname())) {
		return nil
	}
	return fmt.Errorf("xenapi: the host redirected the transfer to a %s URL on %s; only https is followed", u.Scheme, u.Hostname())
}

// Host is the host (name or address, without port) the session talks to.
func (s *Session) Host() string { return s.ep.host }

// Logout ends the session (session.logout). xapi keeps at most 500 sessions
// per user and originator: always log out.
func (s *Session) Logout(ctx context.Context) error {
	_, err := s.Call(ctx, "session.logout")
	if err == nil || IsCode(err, ErrSessionInvalid) {
		s.closed.Store(true)
		s.http.CloseIdleConnections()
		return nil
	}
	return err
}

// Call calls method with the session reference prepended to params, and
// returns the raw JSON result.
func (s *Session) Call(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("xenapi: %s: the session is logged out", method)
	}
	return s.rpc(ctx, method, append([]any{string(s.ref)}, params...)...)
}

// rpc posts one JSON-RPC request and decodes its answer.
func (s *Session) rpc(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	id := s.nextID.Add(1)
	body, err := json.Marshal(rpcRequest{JSONRPC: "2.0", Method: method, Params: params, ID: id})
	if err != nil {
		return nil, fmt.Errorf("xenapi: %s: encoding the request: %w", method, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.rpcURL, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("xenapi: %s: %w", method, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("xenapi: %s on %s: %w", method, s.ep.host, s.scrub(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("xenapi: %s on %s: HTTP %s (is this the XenServer's management address?)", method, s.ep.host, resp.Status)
	}
	data, err := readCapped(resp.Body, maxRPCBody)
	if err != nil {
		return nil, fmt.Errorf("xenapi: %s on %s: reading the answer: %w", method, s.ep.host, s.scrub(err))
	}
	res, err := decodeResponse(method, id, data)
	var xe *Error
	if errors.As(err, &xe) {
		xe.Params = redactParams(xe.Params, string(s.ref))
	}
	return res, err
}

// readCapped reads r to its end, refusing more than limit bytes.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("the answer is larger than %d bytes", limit)
	}
	return data, nil
}

// scrub removes the session reference from an error (a *url.Error quotes
// the URL, and transfer URLs carry session_id).
func (s *Session) scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %w", ue.Op, redactURL(ue.URL), ue.Err)
	}
	if s.ref != "" && strings.Contains(err.Error(), string(s.ref)) {
		return errors.New(strings.ReplaceAll(err.Error(), string(s.ref), "(session)"))
	}
	return err
}

// redactURL drops the query of a URL (it may hold session_id).
func redactURL(raw string) string {
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		return raw[:i] + "?(query redacted)"
	}
	return raw
}
