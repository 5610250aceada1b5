package xenapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
)

// Config says how to reach and log in to a XenServer pool.
type Config struct {
	// URL is "https://host[:port]" of a pool member; "http://" only with
	// AllowPlainLoopback and a loopback host.
	URL      string
	User     string
	Password string // never printed: String and Format redact it
	// CAFile is a PEM bundle the host's certificate must chain to.
	CAFile string
	// Fingerprint is the SHA-256 of the host's leaf certificate (DER), in
	// hex; colons and spaces are ignored, case does not matter.
	Fingerprint        string
	AllowPlainLoopback bool
	// Originator names the client to xapi (its session limits count per
	// originator); "coffer" when empty.
	Originator string
	// HTTPTimeout bounds each RPC; 60 s when zero.
	HTTPTimeout time.Duration
	// Clock paces task polling; clock.Real when nil.
	Clock clock.Clock
}

// String prints the config with the password redacted.
func (c Config) String() string {
	pw := ""
	if c.Password != "" {
		pw = "[redacted]"
	}
	return fmt.Sprintf("xenapi.Config{URL:%q User:%q Password:%s CAFile:%q Fingerprint:%q AllowPlainLoopback:%v Originator:%q HTTPTimeout:%v}",
		c.URL, c.User, pw, c.CAFile, c.Fingerprint, c.AllowPlainLoopback, c.Originator, c.HTTPTimeout)
}

// GoString is String, so %#v redacts too.
func (c Config) GoString() string { return c.String() }

// Format makes every verb (%v, %+v, %#v, %s, %q) print String.
func (c Config) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", c.String())
		return
	}
	fmt.Fprint(f, c.String())
}

const (
	defaultOriginator = "coffer"
	defaultTimeout    = 60 * time.Second
)

// endpoint is a checked base URL: scheme and host[:port], nothing else.
type endpoint struct {
	scheme string
	host   string // name or address, no port, no brackets
	port   string // "" when the URL named none
}

func (e endpoint) base() string {
	if e.port == "" {
		if strings.Contains(e.host, ":") {
			return e.scheme + "://[" + e.host + "]"
		}
		return e.scheme + "://" + e.host
	}
	return e.scheme + "://" + net.JoinHostPort(e.host, e.port)
}

// withHost is the same endpoint on another host (the pool master); a
// master address that carries its own port keeps it.
func (e endpoint) withHost(addr string) (endpoint, error) {
	host, port := addr, e.port
	if h, p, err := net.SplitHostPort(addr); err == nil {
		host, port = h, p
	}
	if n, err := strconv.Atoi(port); port != "" && (err != nil || n < 1 || n > 65535) {
		return endpoint{}, fmt.Errorf("xenapi: the pool master's address %.80q has an invalid port", addr)
	}
	if !validHostName(host) {
		return endpoint{}, fmt.Errorf("xenapi: the pool master's address %.80q is not a host name or IP address", addr)
	}
	return endpoint{scheme: e.scheme, host: host, port: port}, nil
}

func parseEndpoint(raw string, allowPlainLoopback bool) (endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return endpoint{}, fmt.Errorf("xenapi: the XenServer URL %.120q is not of the form https://host[:port]", raw)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return endpoint{}, fmt.Errorf("xenapi: the XenServer URL %q must be only https://host[:port] (no user, path or query)", u.Redacted())
	}
	e := endpoint{scheme: u.Scheme, host: u.Hostname(), port: u.Port()}
	if !validHostName(e.host) {
		return endpoint{}, fmt.Errorf("xenapi: the XenServer URL %q has no valid host", raw)
	}
	switch {
	case e.scheme == "https":
	case e.scheme == "http" && allowPlainLoopback && isLoopback(e.host):
	case e.scheme == "http":
		return endpoint{}, fmt.Errorf("xenapi: the XenServer URL %q is plain http: use https (plain http is allowed only to a loopback host, for tests)", raw)
	default:
		return endpoint{}, fmt.Errorf("xenapi: the XenServer URL %q must start with https://", raw)
	}
	return e, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for _, c := range h {
		ok := c == '-' || c == '.' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			return false
		}
	}
	return true
}

// ParseFingerprint reads a SHA-256 fingerprint in hex, ignoring colons,
// spaces and case.
func ParseFingerprint(s string) ([]byte, error) {
	clean := strings.NewReplacer(":", "", " ", "", "\t", "").Replace(s)
	b, err := hex.DecodeString(clean)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("xenapi: the fingerprint %.120q is not a SHA-256 in hex (64 hex digits, colons allowed)", s)
	}
	return b, nil
}

// Fingerprint is the SHA-256 of a certificate's DER bytes, as colon-separated
// upper-case hex (the form openssl x509 -fingerprint -sha256 prints).
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// hostVerifier checks a host's certificate chain for the host it dialled.
type hostVerifier func(cs tls.ConnectionState, host string) error

// newVerifier verifies the host by the pin, the CA file, or the system
// roots, always itself (never by crypto/tls's default) so that a failure can
// name the certificate's fingerprint.
func newVerifier(cfg Config) (hostVerifier, error) {
	switch {
	case cfg.Fingerprint != "":
		pin, err := ParseFingerprint(cfg.Fingerprint)
		if err != nil {
			return nil, err
		}
		return func(cs tls.ConnectionState, host string) error { return verifyPin(cs, host, pin) }, nil
	case cfg.CAFile != "":
		pool, err := loadCA(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		return func(cs tls.ConnectionState, host string) error { return verifyChain(cs, host, pool, cfg.CAFile) }, nil
	default:
		return func(cs tls.ConnectionState, host string) error { return verifyChain(cs, host, nil, "") }, nil
	}
}

// dialTLS dials addr and runs the TLS handshake with verify as the only
// certificate check (the chain or the pin, for the host being dialled).
func dialTLS(verify hostVerifier) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		conf := &tls.Config{
			MinVersion: tls.VersionTLS12,
			ServerName: host,
			// The chain or the pin is checked in full by VerifyConnection.
			InsecureSkipVerify: true, //nolint:gosec
			VerifyConnection:   func(cs tls.ConnectionState) error { return verify(cs, host) },
		}
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return tc, nil
	}
}

func loadCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("xenapi: reading the XenServer CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("xenapi: the XenServer CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

func verifyPin(cs tls.ConnectionState, host string, pin []byte) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("xenapi: %s sent no certificate", host)
	}
	leaf := cs.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	if subtle.ConstantTimeCompare(sum[:], pin) != 1 {
		return fmt.Errorf("xenapi: the certificate of %s has SHA-256 fingerprint %s, not the one given with --xen-fingerprint: check that this is the right host (or update the fingerprint if its certificate was renewed)",
			host, Fingerprint(leaf))
	}
	return nil
}

// verifyChain checks the chain against roots (the system roots when nil)
// and, when the leaf names any host (SANs), the host name. xapi's older
// self-signed certificates carry only a common name; those are verified by
// chain alone.
func verifyChain(cs tls.ConnectionState, host string, roots *x509.CertPool, caFile string) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("xenapi: %s sent no certificate", host)
	}
	leaf := cs.PeerCertificates[0]
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses) > 0 {
		opts.DNSName = host
	}
	if _, err := leaf.Verify(opts); err != nil {
		if caFile != "" {
			return fmt.Errorf("xenapi: the certificate of %s (SHA-256 %s) is not valid for the CA in %s: %v; pass the pool's CA with --xen-ca or pin the certificate with --xen-fingerprint",
				host, Fingerprint(leaf), caFile, err)
		}
		return fmt.Errorf("xenapi: the certificate of %s is not trusted by this system (%v); its SHA-256 fingerprint is %s: check it on the host and pass --xen-fingerprint %s, or pass the pool's CA with --xen-ca",
			host, err, Fingerprint(leaf), Fingerprint(leaf))
	}
	return nil
}
