package vaultclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// directDialTimeout bounds the connection to the store of a direct
// download: a store the agent cannot reach (a firewall that drops) costs
// this once, then reads go through the vault.
const directDialTimeout = 5 * time.Second

// directReads follows the vault's redirects of pack reads to presigned
// URLs of its store (direct downloads, FORMAT.md). It has its own HTTP
// client, which never carries the agent credential, sends only the Range
// header and follows no further redirect. The first failure before any
// byte is read turns direct downloads off for the client's life (the read
// is then made through the vault), and is reported once.
type directReads struct {
	client *http.Client
	own    *http.Transport
	off    atomic.Bool
	once   sync.Once
	onFail func(error)
}

// newDirectReads builds the store client: the system's CA roots, with the
// vault CA file's certificates added (an MSP's private CA may sign both).
func newDirectReads(cfg Config) (*directReads, error) {
	if cfg.NoDirect {
		return nil, nil
	}
	rt := cfg.DirectTransport
	var own *http.Transport
	if rt == nil {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if cfg.CAFile != "" {
			if err := addCAFile(pool, cfg.CAFile); err != nil {
				return nil, err
			}
		}
		own = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: directDialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
			TLSHandshakeTimeout:   directDialTimeout,
			ResponseHeaderTimeout: vaultResponseHeaderTimeout,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
		}
		rt = own
	}
	return &directReads{
		client: &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		own:    own, onFail: cfg.OnDirectFailure,
	}, nil
}

// on reports whether to ask the vault for a redirect.
func (d *directReads) on() bool { return d != nil && !d.off.Load() }

// fail turns direct downloads off and reports why, once.
func (d *directReads) fail(err error) {
	d.off.Store(true)
	d.once.Do(func() {
		if d.onFail != nil {
			d.onFail(err)
		}
	})
}

func (d *directReads) close() {
	if d != nil && d.own != nil {
		d.own.CloseIdleConnections()
	}
}

// get reads a range of an object from the presigned URL loc and reports
// whether fn was called. Errors never include loc: its query is a bearer
// capability for the object.
func (d *directReads) get(ctx context.Context, loc, name string, off, length int64, fn func(io.Reader) error) (started bool, err error) {
	u, err := checkDirectURL(loc)
	if err != nil {
		return false, fmt.Errorf("%s: the vault redirected to %w", name, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, fmt.Errorf("%s: direct download: %v", name, transportError(err))
	}
	ranged := setRange(req, off, length)
	who := "the store at " + u.Host
	resp, err := d.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("%s: direct download from %s: %w", name, u.Host, transportError(err))
	}
	defer drainClose(resp.Body)
	n, ok, err := replyLength(resp, who, name, off, length, ranged)
	if err != nil {
		return false, err
	}
	if !ok {
		return false, fmt.Errorf("%s: direct download: %s answered %s", name, who, resp.Status)
	}
	idle := newIdleReader(resp.Body, vaultIdleTimeout, cancel)
	defer idle.stop()
	body := &readErrs{r: idle}
	if err := fn(store.NewExactReader(body, n, name)); err != nil {
		if body.err != nil {
			// The store's connection failed mid-body: the retry layer
			// reads again, through the vault.
			d.fail(fmt.Errorf("%s: direct download from %s: %w", name, u.Host, body.err))
		}
		return true, err
	}
	return true, nil
}

// checkDirectURL checks a redirect's Location: an absolute https URL
// (http only to a loopback host) without user-info.
func checkDirectURL(loc string) (*url.URL, error) {
	u, err := url.Parse(loc)
	if err != nil || u.Host == "" || u.User != nil {
		return nil, errors.New("an invalid URL")
	}
	if err := store.SecureScheme(u); err != nil {
		return nil, fmt.Errorf("%s, refused: %w", u.Host, err)
	}
	return u, nil
}

// readErrs remembers the first error of its reader other than EOF.
type readErrs struct {
	r   io.Reader
	err error
}

func (e *readErrs) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}
