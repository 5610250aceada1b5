package vaultclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// Environment variables for repositories behind a vault.
const (
	// EnvCredential holds the agent credential (cfa1_…); it overrides the
	// config file's credential.
	EnvCredential = "COFFER_CREDENTIAL"
	// EnvVaultCA names a PEM file of CA certificates to trust for the vault
	// instead of the system roots.
	EnvVaultCA = "COFFER_VAULT_CA"
	// EnvDirectDownloads, set to "off", stops the agent from asking for
	// direct downloads (it reads every object through the vault).
	EnvDirectDownloads = "COFFER_DIRECT_DOWNLOADS"
)

// Timeouts of the vault client. There is no overall request timeout: pack
// bodies are large and the link may be slow; instead a response body that
// delivers nothing for vaultIdleTimeout is cut off.
const (
	vaultResponseHeaderTimeout = 60 * time.Second
	vaultExpectContinueTimeout = 2 * time.Second
	vaultIdleTimeout           = 60 * time.Second
	vaultMaxErrorBody          = 64 << 10
	vaultMaxListBody           = 16 << 20
	vaultMaxMessage            = 512
)

// Config says where a vault is and how the agent authenticates.
type Config struct {
	// BaseURL is https://host[:port][/base], or http:// on a loopback host.
	BaseURL *url.URL
	// Credential is the agent credential (cfa1_…). Enroll does not need it.
	Credential vaultapi.Secret
	// CAFile names a PEM file of CA certificates that replace the system
	// roots for this vault ("" = system roots).
	CAFile string
	// Transport replaces the HTTP transport (tests); CAFile is then unused.
	Transport http.RoundTripper
	// Retry, when its Attempts are set, retries the calls that are not
	// Store methods (the seed calls) as the retry layer retries a store's;
	// the Store methods are retried by the store.Retry the client sits
	// under. Clock paces those retries (nil: the real clock).
	Retry store.RetryPolicy
	Clock clock.Clock
	// NoDirect turns direct downloads off: the client never asks the vault
	// to redirect a read to its store. OnDirectFailure hears, once, why
	// they stopped (the store could not be reached, or answered wrong).
	// DirectTransport replaces the store client's transport (tests).
	NoDirect        bool
	OnDirectFailure func(error)
	DirectTransport http.RoundTripper
}

// DirectFromEnv reads EnvDirectDownloads: "off" (or "0", "false") turns
// direct downloads off, "on", "1", "true" or unset leaves them on.
func DirectFromEnv() (noDirect bool, err error) {
	switch v := strings.ToLower(os.Getenv(EnvDirectDownloads)); v {
	case "", "on", "1", "true":
		return false, nil
	case "off", "0", "false":
		return true, nil
	default:
		return false, fmt.Errorf("%s=%q: want on or off", EnvDirectDownloads, clipOutside(v))
	}
}

// Client is a store reached through cofferd's HTTP API: one tenant's
// repository, selected by the credential. The vault is append-only for
// agents: Put creates, Delete is always refused with store.ErrDenied. Errors are
// mapped to the store sentinels from the JSON error code (the HTTP status
// is the fallback), so Retry treats them as it treats every other store's.
type Client struct {
	base   *url.URL
	cred   vaultapi.Secret
	client *http.Client
	own    *http.Transport // closed by Close; nil with an injected transport
	retry  store.RetryPolicy
	clock  clock.Clock
	direct *directReads // nil: direct downloads off
}

// New builds a vault client without contacting the vault.
func New(cfg Config) (*Client, error) {
	if cfg.Credential == "" {
		return nil, fmt.Errorf("vault %s: no agent credential: enroll with coffer init --repo URL --token TOKEN, or set %s: %w",
			safeURL(cfg.BaseURL), EnvCredential, store.ErrDenied)
	}
	if _, _, err := vaultapi.ParseCredential(cfg.Credential.Reveal()); err != nil {
		// The parser's error never repeats the secret.
		return nil, fmt.Errorf("vault %s: the agent credential is malformed (%v); re-enroll with coffer init --repo URL --token TOKEN: %w",
			safeURL(cfg.BaseURL), err, store.ErrDenied)
	}
	c, own, err := vaultClient(cfg)
	if err != nil {
		return nil, err
	}
	direct, err := newDirectReads(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{base: c.base, cred: cfg.Credential, client: c.client, own: own, retry: cfg.Retry, clock: cfg.Clock, direct: direct}, nil
}

// retrying runs one call under the client's retry policy (Config.Retry),
// or once when it has none.
func (v *Client) retrying(ctx context.Context, op, name string, fn func() error) error {
	if v.retry.Attempts == 0 {
		return fn()
	}
	return store.Do(ctx, v.retry, v.clock, nil, op, name, fn)
}

type vaultConn struct {
	base   *url.URL
	client *http.Client
}

// vaultClient checks the base URL and builds the HTTP client.
func vaultClient(cfg Config) (vaultConn, *http.Transport, error) {
	if cfg.BaseURL == nil {
		return vaultConn{}, nil, errors.New("vault: no URL")
	}
	base, err := CheckURL(cfg.BaseURL)
	if err != nil {
		return vaultConn{}, nil, err
	}
	rt := cfg.Transport
	var own *http.Transport
	if rt == nil {
		own, err = vaultTransport(cfg.CAFile)
		if err != nil {
			return vaultConn{}, nil, err
		}
		rt = own
	}
	client := &http.Client{
		Transport: rt,
		// A redirect would resend the credential elsewhere: never follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return vaultConn{base: base, client: client}, own, nil
}

// vaultTransport is the HTTP/1.1 transport with TLS 1.2 or later.
func vaultTransport(caFile string) (*http.Transport, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool := x509.NewCertPool()
		if err := addCAFile(pool, caFile); err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: vaultResponseHeaderTimeout,
		ExpectContinueTimeout: vaultExpectContinueTimeout,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		// HTTP/1.1 only: per-request deadlines and upload slots on the
		// vault stay per connection.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}, nil
}

// addCAFile adds the certificates of the vault CA file (vault_ca or
// COFFER_VAULT_CA) to pool.
func addCAFile(pool *x509.CertPool, caFile string) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("reading the vault CA file (vault_ca or %s): %w", EnvVaultCA, err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("the vault CA file %s holds no PEM certificate", caFile)
	}
	return nil
}

// CheckURL validates a vault base URL and returns a copy without a
// trailing slash.
func CheckURL(u *url.URL) (*url.URL, error) {
	if u.User != nil {
		return nil, errors.New("vault URL must not contain credentials: the agent credential lives in the config file or " + EnvCredential)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, errors.New("vault URL takes no query or fragment: use https://host[:port][/base]")
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("vault URL needs a host: https://host[:port][/base]")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("vault URL has invalid port %q", p)
		}
	}
	if err := store.SecureScheme(u); errors.Is(err, store.ErrPlainHTTP) {
		return nil, fmt.Errorf("vault URL http://%s sends the credential in clear text: use https:// (plain http is allowed only on a loopback address)", u.Host)
	} else if err != nil {
		return nil, fmt.Errorf("vault URL %w", err)
	}
	path := strings.TrimSuffix(u.Path, "/")
	if path != "" {
		if len(path) > 256 {
			return nil, errors.New("vault URL: base path longer than 256 bytes")
		}
		for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
			if seg == "" || seg == "." || seg == ".." {
				return nil, errors.New("vault URL: base path has an empty, \".\" or \"..\" segment")
			}
			for _, c := range []byte(seg) {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
					return nil, errors.New("vault URL: base path may use letters, digits, '.', '_', '-' and '/'")
				}
			}
		}
	}
	return &url.URL{Scheme: u.Scheme, Host: strings.ToLower(u.Host), Path: path}, nil
}

// safeURL prints a URL for messages, without user-info, query or fragment.
func safeURL(u *url.URL) string {
	if u == nil {
		return "(no URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// Location implements Store: the vault URL, never the credential.
func (v *Client) Location() string { return v.base.String() }

// Close implements Store.
func (v *Client) Close() error {
	v.direct.close()
	if v.own != nil {
		v.own.CloseIdleConnections()
	}
	return nil
}

func (v *Client) endpoint(route string, q url.Values) string {
	u := *v.base
	u.Path = v.base.Path + route
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func (v *Client) newRequest(ctx context.Context, method, target string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, &store.PermanentError{Err: fmt.Errorf("vault request: %v", err)}
	}
	req.Header.Set("Authorization", "Bearer "+v.cred.Reveal())
	req.Header.Set("User-Agent", "coffer-agent")
	return req, nil
}

// Put implements Store: a PUT with the exact Content-Length, streamed from
// r. The body can be made again (GetBody), so Go may resend it on a
// keep-alive connection that died.
func (v *Client) Put(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	return v.put(ctx, name, r, size, nil)
}

// PutMeta implements store.MetaPutter: Put, with the sizes in m sent in
// the Coffer-Logical-Bytes and Coffer-Data-Bytes headers.
func (v *Client) PutMeta(ctx context.Context, name string, r io.ReaderAt, size int64, m store.ObjectMeta) error {
	return v.put(ctx, name, r, size, &m)
}

func (v *Client) put(ctx context.Context, name string, r io.ReaderAt, size int64, m *store.ObjectMeta) error {
	if err := store.ValidName(name); err != nil {
		return err
	}
	if size < 0 {
		return &store.PermanentError{Err: fmt.Errorf("%s: negative size %d", name, size)}
	}
	src := store.NewPutSource(r, size)
	defer src.Finish()
	var body io.Reader = http.NoBody
	if size > 0 {
		body = io.NewSectionReader(src, 0, size)
	}
	req, err := v.newRequest(ctx, http.MethodPut, v.endpoint(vaultapi.RouteRepo+name, nil), body)
	if err != nil {
		return err
	}
	req.ContentLength = size // 0 is sent as "Content-Length: 0" on a PUT
	if size > 0 {
		req.GetBody = func() (io.ReadCloser, error) {
			return io.NopCloser(io.NewSectionReader(src, 0, size)), nil
		}
		// A refusal (exists, quota, too large) then costs no upload.
		req.Header.Set("Expect", "100-continue")
	}
	// Puts are create-only, so sending one twice is safe (the second gets
	// 409, which content-named objects take as success): this lets Go
	// resend it when a kept-alive connection turns out dead.
	req.Header.Set("Idempotency-Key", name)
	req.Header.Set("Content-Type", "application/octet-stream")
	if m != nil {
		req.Header.Set(vaultapi.HeaderLogicalBytes, strconv.FormatInt(m.LogicalBytes, 10))
		req.Header.Set(vaultapi.HeaderDataBytes, strconv.FormatInt(m.DataBytes, 10))
	}
	resp, err := v.client.Do(req)
	if err != nil {
		if src.Short() {
			return &store.PermanentError{Err: fmt.Errorf("%s: %w (want %d bytes)", name, store.ErrShortSource, size)}
		}
		return fmt.Errorf("%s: put: %w", name, transportError(err))
	}
	defer drainClose(resp.Body)
	if resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK {
		return nil
	}
	err = v.statusError(resp, http.MethodPut, name)
	if errors.As(err, new(*store.QuotaError)) {
		return fmt.Errorf("vault refused %s: %w", name, err)
	}
	return fmt.Errorf("%s: put: %w", name, err)
}

// Get implements Store with a ranged GET. The Content-Range of the reply
// must be exactly the range asked for.
func (v *Client) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	if err := store.ValidName(name); err != nil {
		return err
	}
	if off < 0 {
		return fmt.Errorf("%s: negative offset %d: %w", name, off, store.ErrInvalidRange)
	}
	if length == 0 {
		return store.GetEmpty(ctx, v, name, off, length, fn)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := v.newRequest(ctx, http.MethodGet, v.endpoint(vaultapi.RouteRepo+name, nil), nil)
	if err != nil {
		return err
	}
	ranged := setRange(req, off, length)
	askDirect := v.direct.on()
	if askDirect {
		req.Header.Set(vaultapi.HeaderAcceptDirect, "1")
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: get: %w", name, transportError(err))
	}
	defer drainClose(resp.Body)
	if askDirect && resp.StatusCode == http.StatusTemporaryRedirect {
		loc := resp.Header.Get("Location")
		drainClose(resp.Body) // frees the vault connection while the store is read
		started, err := v.direct.get(ctx, loc, name, off, length, fn)
		if started || err == nil {
			return err
		}
		// Nothing was read: read it through the vault now, and from now on.
		v.direct.fail(err)
		return v.Get(ctx, name, off, length, fn)
	}
	n, ok, err := replyLength(resp, "the vault", name, off, length, ranged)
	if err != nil {
		return err
	}
	if !ok {
		err := v.statusError(resp, http.MethodGet, name)
		if errors.Is(err, store.ErrInvalidRange) && length < 0 {
			// "bytes=off-" with off at the end is unsatisfiable over HTTP,
			// but an empty read to Store.
			return store.GetEmpty(ctx, v, name, off, length, fn)
		}
		return fmt.Errorf("%s: get: %w", name, err)
	}
	body := newIdleReader(resp.Body, vaultIdleTimeout, cancel)
	defer body.stop()
	return fn(store.NewExactReader(body, n, name))
}

// setRange sets the Range header of a read of length bytes at off
// (length < 0: to the end) and reports whether it set one.
func setRange(req *http.Request, off, length int64) bool {
	switch {
	case length > 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+length-1))
	case off > 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	default:
		return false
	}
	return true
}

// replyLength checks the status and Content-Range of a reply to a read
// (from the vault, or from the store for a direct download) and returns
// its body's length. ok is false for a status other than 200 and 206, which
// the caller turns into an error.
func replyLength(resp *http.Response, who, name string, off, length int64, ranged bool) (n int64, ok bool, err error) {
	switch {
	case resp.StatusCode == http.StatusOK && !ranged:
		if resp.ContentLength < 0 {
			return 0, true, fmt.Errorf("%s: get: %s sent no Content-Length", name, who)
		}
		return resp.ContentLength, true, nil
	case resp.StatusCode == http.StatusPartialContent && ranged:
		first, last, size, err := parseContentRange(resp.Header.Get("Content-Range"), who)
		if err != nil {
			return 0, true, fmt.Errorf("%s: get: %v", name, err)
		}
		wantLast := off + length - 1
		if length < 0 {
			wantLast = size - 1
		}
		if first != off || last < wantLast {
			if last < wantLast && first == off {
				return 0, true, fmt.Errorf("%s: range %d+%d runs past the end of the object (%d bytes): %w", name, off, length, size, store.ErrInvalidRange)
			}
			return 0, true, fmt.Errorf("%s: get: %s answered range %d-%d for %d-%d", name, who, first, last, off, wantLast)
		}
		if last != wantLast {
			return 0, true, fmt.Errorf("%s: get: %s answered range %d-%d for %d-%d", name, who, first, last, off, wantLast)
		}
		n = last - first + 1
		if resp.ContentLength >= 0 && resp.ContentLength != n {
			return 0, true, fmt.Errorf("%s: get: Content-Length %d does not match Content-Range %d-%d", name, resp.ContentLength, first, last)
		}
		return n, true, nil
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent:
		return 0, true, fmt.Errorf("%s: get: %s answered %d to a request with%s a Range", name, who, resp.StatusCode, map[bool]string{true: "", false: "out"}[ranged])
	}
	return 0, false, nil
}

// parseContentRange parses "bytes first-last/size".
func parseContentRange(s, who string) (first, last, size int64, err error) {
	bad := fmt.Errorf("%s sent a malformed Content-Range %q", who, clipOutside(s))
	rest, ok := strings.CutPrefix(s, "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	rng, total, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	first, err1 := strconv.ParseInt(a, 10, 64)
	last, err2 := strconv.ParseInt(b, 10, 64)
	size, err3 := strconv.ParseInt(total, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || first < 0 || last < first || size <= last {
		return 0, 0, 0, bad
	}
	return first, last, size, nil
}

// Stat implements Store with a HEAD.
func (v *Client) Stat(ctx context.Context, name string) (store.Info, error) {
	if err := store.ValidName(name); err != nil {
		return store.Info{}, err
	}
	req, err := v.newRequest(ctx, http.MethodHead, v.endpoint(vaultapi.RouteRepo+name, nil), nil)
	if err != nil {
		return store.Info{}, err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return store.Info{}, fmt.Errorf("%s: stat: %w", name, transportError(err))
	}
	defer drainClose(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return store.Info{}, fmt.Errorf("%s: stat: %w", name, v.statusError(resp, http.MethodHead, name))
	}
	if resp.ContentLength < 0 {
		return store.Info{}, fmt.Errorf("%s: stat: the vault sent no Content-Length", name)
	}
	info := store.Info{Name: name, Size: resp.ContentLength}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		t, err := http.ParseTime(lm)
		if err != nil {
			return store.Info{}, fmt.Errorf("%s: stat: the vault sent a malformed Last-Modified %q", name, clipOutside(lm))
		}
		info.ModTime = t
	}
	return info, nil
}

// List implements Store: GET /v1/list page by page, each page starting
// after the previous page's "next". Names come in byte order.
func (v *Client) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if err := store.ValidPrefix(prefix); err != nil {
		return err
	}
	after := ""
	for {
		page, err := v.listPage(ctx, prefix, after)
		if err != nil {
			return err
		}
		last := after
		for _, o := range page.Objects {
			if store.ValidName(o.Name) != nil || !strings.HasPrefix(o.Name, prefix) || o.Name <= last || o.Size < 0 {
				return fmt.Errorf("list %q: the vault sent an object %q out of order or outside the prefix", prefix, clipOutside(o.Name))
			}
			last = o.Name
			if err := fn(store.Info{Name: o.Name, Size: o.Size, ModTime: o.Modified}); err != nil {
				return err
			}
		}
		if page.Next == "" {
			return nil
		}
		if page.Next <= after || store.ValidName(page.Next) != nil || !strings.HasPrefix(page.Next, prefix) {
			return fmt.Errorf("list %q: the vault sent a page that does not advance (next %q)", prefix, clipOutside(page.Next))
		}
		after = page.Next
	}
}

func (v *Client) listPage(ctx context.Context, prefix, after string) (*vaultapi.ListPage, error) {
	q := url.Values{"prefix": {prefix}}
	if after != "" {
		q.Set("after", after)
	}
	q.Set("limit", strconv.Itoa(vaultapi.DefaultListLimit))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := v.newRequest(ctx, http.MethodGet, v.endpoint(vaultapi.RouteList, q), nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", prefix, transportError(err))
	}
	defer drainClose(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("list %q: %w", prefix, v.statusError(resp, http.MethodGet, ""))
	}
	body := newIdleReader(resp.Body, vaultIdleTimeout, cancel)
	defer body.stop()
	var page vaultapi.ListPage
	// A page cut off in transit fails to parse: it never reads as the end.
	dec := json.NewDecoder(io.LimitReader(body, vaultMaxListBody))
	if err := dec.Decode(&page); err != nil {
		return nil, fmt.Errorf("list %q: reading the vault's reply: %v", prefix, err)
	}
	return &page, nil
}

// Delete implements Store. Agents cannot delete through a vault: it
// answers 403 and Delete returns store.ErrDenied.
func (v *Client) Delete(ctx context.Context, name string) error {
	if err := store.ValidName(name); err != nil {
		return err
	}
	req, err := v.newRequest(ctx, http.MethodDelete, v.endpoint(vaultapi.RouteRepo+name, nil), nil)
	if err != nil {
		return err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: delete: %w", name, transportError(err))
	}
	defer drainClose(resp.Body)
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = v.statusError(resp, http.MethodDelete, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return fmt.Errorf("%s: delete: %w", name, err)
}

// TenantCheck asks the vault who the credential belongs to (GET
// /v1/tenant), so a bad credential fails before any work starts.
func (v *Client) TenantCheck(ctx context.Context) error {
	req, err := v.newRequest(ctx, http.MethodGet, v.endpoint(vaultapi.RouteTenant, nil), nil)
	if err != nil {
		return err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("vault %s: %w", v.Location(), transportError(err))
	}
	defer drainClose(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("vault %s: %w", v.Location(), v.statusError(resp, http.MethodGet, ""))
	}
	return nil
}

// Error is an error reply of the vault. Store errors from a Client wrap
// it beside the sentinel it maps to, so errors.As finds the wire code.
type Error struct {
	Status    int
	Code      string // vaultapi.Code*; "" when the reply had no JSON body
	Message   string // the server's message, cleaned of control characters
	RequestID string

	retryAfter int // retry_after_seconds of the body
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	s := fmt.Sprintf("vault: %s (HTTP %d", msg, e.Status)
	if e.Code != "" {
		s += ", " + e.Code
	}
	if e.RequestID != "" {
		s += ", request " + e.RequestID
	}
	return s + ")"
}

// readVaultError reads the JSON error body of resp (HEAD replies have none).
func readVaultError(resp *http.Response) *Error {
	ve := &Error{Status: resp.StatusCode, RequestID: cleanOutside(resp.Header.Get(vaultapi.HeaderRequestID), 64)}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, vaultMaxErrorBody))
	var eb vaultapi.ErrorBody
	if len(b) > 0 && json.Unmarshal(b, &eb) == nil {
		ve.Code = cleanOutside(eb.Error.Code, 64)
		ve.Message = cleanOutside(eb.Error.Message, vaultMaxMessage)
		ve.retryAfter = eb.Error.RetryAfterSeconds
		if eb.Error.RequestID != "" {
			ve.RequestID = cleanOutside(eb.Error.RequestID, 64)
		}
	}
	return ve
}

// retryAfter reads Retry-After (seconds, or an HTTP date measured against
// the reply's own Date, so the two machines' clocks need not agree), falling
// back to the body's retry_after_seconds.
func retryAfter(resp *http.Response, body int) time.Duration {
	if h := resp.Header.Get("Retry-After"); h != "" {
		if s, err := strconv.Atoi(h); err == nil && s >= 0 {
			return time.Duration(min(s, 3600)) * time.Second
		}
		t, terr := http.ParseTime(h)
		sent, derr := http.ParseTime(resp.Header.Get("Date"))
		if terr == nil && derr == nil {
			return min(max(t.Sub(sent), 0), time.Hour)
		}
	}
	if body > 0 {
		return time.Duration(min(body, 3600)) * time.Second
	}
	return 0
}

// statusError maps an error reply to the store sentinels (the table in the
// design, "Status -> store sentinel"). The JSON code decides; the status is
// the fallback.
func (v *Client) statusError(resp *http.Response, method, name string) error {
	ve := readVaultError(resp)
	return mapVaultError(ve, retryAfter(resp, ve.retryAfter), method)
}

func mapVaultError(ve *Error, wait time.Duration, method string) error {
	if err := seedPending(ve, method); err != nil {
		return err
	}
	switch ve.Code {
	case vaultapi.CodeBadName, vaultapi.CodeBadPath, vaultapi.CodeBadPrefix:
		return fmt.Errorf("%w: %w", store.ErrInvalidName, ve)
	case vaultapi.CodeQuotaExceeded:
		msg := ve.Message
		if msg == "" {
			msg = "the tenant's quota is exceeded"
		}
		return &store.QuotaError{Msg: msg}
	case vaultapi.CodeStoreFull:
		return fmt.Errorf("%w: %w", store.ErrNoSpace, ve)
	case vaultapi.CodeExists:
		return fmt.Errorf("%w: %w", store.ErrExists, ve)
	case vaultapi.CodeAppendOnly:
		return fmt.Errorf("%w: the vault is append-only: agents cannot delete objects (%w)", store.ErrDenied, ve)
	case vaultapi.CodeTenantSuspended:
		return fmt.Errorf("%w: %w; contact your provider", store.ErrDenied, ve)
	case vaultapi.CodeSeedInTransit, vaultapi.CodeSigningKeyMismatch, vaultapi.CodeNoSigningKey, vaultapi.CodeBadSeed, vaultapi.CodeSeedCancelled:
		// 409s and a 422 that no retry changes; never ErrExists, which
		// a caller could take for "done already".
		return &store.PermanentError{Err: ve}
	}
	switch s := ve.Status; {
	case s == http.StatusUnauthorized:
		code := ve.Code
		if code == "" {
			code = "unauthenticated"
		}
		return fmt.Errorf("%w: the vault refused this agent's credential (%s); re-enroll: coffer init --repo URL --token NEW (ask your provider for a token: cofferd tenant token NAME): %w",
			store.ErrDenied, code, ve)
	case s == http.StatusForbidden:
		if method == http.MethodDelete {
			return fmt.Errorf("%w: the vault is append-only: agents cannot delete objects", store.ErrDenied)
		}
		return fmt.Errorf("%w: the vault refused the request; contact your provider: %w", store.ErrDenied, ve)
	case s == http.StatusNotFound:
		return fmt.Errorf("%w: %w", store.ErrNotFound, ve)
	case s == http.StatusConflict:
		return fmt.Errorf("%w: %w", store.ErrExists, ve)
	case s == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%w: %w", store.ErrInvalidRange, ve)
	case s == http.StatusTooManyRequests:
		// Throttled: Retry waits without counting an attempt.
		return &store.RetryAfterError{Wait: wait, Reason: store.ReasonThrottled, Err: ve}
	case s == http.StatusServiceUnavailable:
		reason := ve.Code
		if reason == "" {
			reason = "unavailable"
		}
		return &store.RetryAfterError{Wait: wait, Reason: reason, Err: ve}
	case s == http.StatusInsufficientStorage:
		return fmt.Errorf("%w: %w", store.ErrNoSpace, ve)
	case s == http.StatusRequestTimeout || s >= 500:
		return ve // transient
	case s >= 400:
		return &store.PermanentError{Err: ve}
	}
	// 1xx or 3xx (a redirect is never followed: it would carry the
	// credential elsewhere).
	return &store.PermanentError{Err: fmt.Errorf("unexpected reply: %w", ve)}
}

// transportError strips the URL from a *url.Error (it holds no secret, but
// the object name is already in the message) and keeps the cause.
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// cleanOutside makes text from the vault safe to print on a terminal: it is
// cut at n bytes, and control characters, escape sequences and bidi
// overrides become visible escapes (termtext.Clean).
func cleanOutside(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return termtext.Clean(s)
}

func clipOutside(s string) string { return cleanOutside(s, 80) }

func drainClose(rc io.ReadCloser) {
	// Drain a little so the connection can be reused; a large rest is not
	// worth reading.
	_, _ = io.CopyN(io.Discard, rc, 64<<10)
	_ = rc.Close()
}

// idleReader cancels the request when the body delivers nothing for d.
type idleReader struct {
	r     io.Reader
	d     time.Duration
	timer *time.Timer
	mu    sync.Mutex
	fired bool
}

func newIdleReader(r io.Reader, d time.Duration, cancel context.CancelFunc) *idleReader {
	ir := &idleReader{r: r, d: d}
	ir.timer = time.AfterFunc(d, func() {
		ir.mu.Lock()
		ir.fired = true
		ir.mu.Unlock()
		cancel()
	})
	return ir
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	ir.timer.Reset(ir.d)
	if err != nil && err != io.EOF {
		ir.mu.Lock()
		fired := ir.fired
		ir.mu.Unlock()
		if fired {
			err = fmt.Errorf("the vault sent nothing for %s: %w", ir.d, err)
		}
	}
	return n, err
}

func (ir *idleReader) stop() { ir.timer.Stop() }

// Enroll exchanges an enrollment token for the credential the agent made:
// POST /v1/enroll with the token and the credential's SHA-256 only. The
// same request may be sent again after a lost reply (the vault treats it
// as done). cfg.Credential is not used.
func Enroll(ctx context.Context, cfg Config, req vaultapi.EnrollRequest) (*vaultapi.EnrollResponse, error) {
	c, own, err := vaultClient(cfg)
	if err != nil {
		return nil, err
	}
	if own != nil {
		defer own.CloseIdleConnections()
	}
	body, err := req.Encode()
	if err != nil {
		return nil, err
	}
	target := *c.base
	target.Path += vaultapi.RouteEnroll
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("enroll: %v", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("User-Agent", "coffer-agent")
	resp, err := c.client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("enrolling at %s: %w", c.base, transportError(err))
	}
	defer drainClose(resp.Body)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		ve := readVaultError(resp)
		switch {
		case ve.Code == vaultapi.CodeCredentialIDTaken:
			return nil, fmt.Errorf("enrolling at %s: %w: %w", c.base, store.ErrExists, ve)
		case ve.Status == http.StatusUnauthorized || ve.Code == vaultapi.CodeTokenUsed:
			hint := "; ask your provider for a new one (cofferd tenant token NAME)"
			if strings.Contains(ve.Message, "ask your provider") {
				hint = "" // the vault said what to do
			}
			return nil, &store.PermanentError{Err: fmt.Errorf("the vault at %s refused the enrollment token: %w%s", c.base, ve, hint)}
		}
		return nil, fmt.Errorf("enrolling at %s: %w", c.base, mapVaultError(ve, retryAfter(resp, ve.retryAfter), http.MethodPost))
	}
	var out vaultapi.EnrollResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, vaultMaxErrorBody)).Decode(&out); err != nil {
		return nil, fmt.Errorf("enrolling at %s: reading the vault's reply: %v", c.base, err)
	}
	// Printed by init: terminal-safe, whatever answers at the URL.
	out.TenantName = cleanOutside(out.TenantName, 128)
	out.TenantID = cleanOutside(out.TenantID, 64)
	out.CredentialID = cleanOutside(out.CredentialID, 64)
	return &out, nil
}

// ErrNoEscrow is returned (wrapped) by FetchEscrow when the vault offers no
// escrow key.
var ErrNoEscrow = errors.New("the vault offers no escrow key")

// EscrowKey is the vault's published escrow public key (GET /v1/escrow).
type EscrowKey struct {
	Recipient   string `json:"recipient"`
	Fingerprint string `json:"fingerprint"`
}

// FetchEscrow reads the vault's escrow public key. It needs no credential.
// The error Is ErrNoEscrow (and store.ErrNotFound) when the vault has none. The
// caller must check that the fingerprint matches the recipient.
func FetchEscrow(ctx context.Context, cfg Config) (*EscrowKey, error) {
	c, own, err := vaultClient(cfg)
	if err != nil {
		return nil, err
	}
	if own != nil {
		defer own.CloseIdleConnections()
	}
	target := *c.base
	target.Path += vaultapi.RouteEscrow
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("escrow: %v", err)
	}
	req.Header.Set("User-Agent", "coffer-agent")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking %s for its escrow key: %w", c.base, transportError(err))
	}
	defer drainClose(resp.Body)
	if resp.StatusCode != http.StatusOK {
		ve := readVaultError(resp)
		if ve.Code == vaultapi.CodeNoEscrow || ve.Status == http.StatusNotFound {
			return nil, fmt.Errorf("vault %s: %w: %w", c.base, ErrNoEscrow, store.ErrNotFound)
		}
		return nil, fmt.Errorf("asking %s for its escrow key: %w", c.base, mapVaultError(ve, retryAfter(resp, ve.retryAfter), http.MethodGet))
	}
	var k EscrowKey
	if err := json.NewDecoder(io.LimitReader(resp.Body, vaultMaxErrorBody)).Decode(&k); err != nil || k.Recipient == "" {
		return nil, &store.PermanentError{Err: fmt.Errorf("vault %s: malformed escrow key reply", c.base)}
	}
	return &k, nil
}

// RecordEscrowSlot tells the vault that the key slot named slot
// (keys/<sha256>, already stored) is the tenant's escrow slot: POST
// /v1/escrow/slot. The vault checks the slot before it records it.
func (v *Client) RecordEscrowSlot(ctx context.Context, slot string) error {
	body, err := json.Marshal(map[string]string{"slot": slot})
	if err != nil {
		return err
	}
	req, err := v.newRequest(ctx, http.MethodPost, v.endpoint(vaultapi.RouteEscrowSlot, nil), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("recording the escrow slot with %s: %w", v.Location(), transportError(err))
	}
	defer drainClose(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("recording the escrow slot with %s: %w", v.Location(), v.statusError(resp, http.MethodPost, slot))
	}
	return nil
}
