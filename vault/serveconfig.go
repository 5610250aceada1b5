package vault

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"

	"github.com/cofferhq/coffer/internal/store"
)

// ServeConfig holds the flags of `cofferd serve` that concern the listener
// and the server (the store is a global flag of cofferd).
type ServeConfig struct {
	Listen          string
	TLSCert         string
	TLSKey          string
	AllowPlainHTTP  bool
	MetricsListen   string
	TenantUploads   int
	TenantDownloads int
	TenantRPS       float64
	TenantBurst     int
	GlobalUploads   int
	MaxObjectSize   string // e.g. 300MiB
	MinUploadRate   string // e.g. 32KiB/s; 0 turns the floor off
	AuthCacheTTL    time.Duration
	ShutdownTimeout time.Duration
	MaxConns        int
	MaxUnauthConns  int
	HeaderTimeout   time.Duration
	BodyTimeout     time.Duration
	IdleTimeout     time.Duration
	StoreWriteRate  float64 // requests/s to the store: puts, deletes, swaps; 0 unlimited
	StoreReadRate   float64 // requests/s to the store: gets, stats, lists; 0 unlimited
	// DirectDownloads redirects agents' large pack reads to presigned
	// store URLs; DirectEndpoint is the store's address as agents reach it
	// ("": the --store endpoint).
	DirectDownloads bool
	DirectEndpoint  string
	// SessionHeartbeat is how often agents beat in an upload session
	// (hidden; tests shorten it).
	SessionHeartbeat time.Duration

	limits Limits // set by Validate
}

// ServeFlags registers the serve flags on fs with their defaults.
func ServeFlags(fs *pflag.FlagSet) *ServeConfig {
	d := DefaultLimits()
	c := &ServeConfig{}
	fs.StringVar(&c.Listen, "listen", ":8443", "address of the agent API")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "TLS certificate chain (PEM)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "TLS private key (PEM)")
	fs.BoolVar(&c.AllowPlainHTTP, "allow-plain-http", false, "serve plain HTTP on a non-loopback address (only behind a TLS-terminating proxy)")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "127.0.0.1:9464", "address of /metrics and /healthz (empty: off)")
	fs.IntVar(&c.TenantUploads, "tenant-uploads", d.TenantUploads, "concurrent uploads per tenant")
	fs.IntVar(&c.TenantDownloads, "tenant-downloads", d.TenantDownloads, "concurrent downloads per tenant")
	fs.Float64Var(&c.TenantRPS, "tenant-rps", d.TenantRPS, "requests per second per tenant")
	fs.IntVar(&c.TenantBurst, "tenant-burst", d.TenantBurst, "request burst per tenant")
	fs.IntVar(&c.GlobalUploads, "global-uploads", d.GlobalUploads, "concurrent uploads for this replica")
	fs.StringVar(&c.MaxObjectSize, "max-object-size", "300MiB", "largest pack accepted")
	fs.StringVar(&c.MinUploadRate, "min-upload-rate", "32KiB/s", "slowest upload accepted, measured over 30 s windows (0: no floor)")
	fs.DurationVar(&c.AuthCacheTTL, "auth-cache-ttl", d.AuthCacheTTL, "how long a checked credential is trusted (revocation reaches this replica that late)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight requests may finish on SIGTERM")
	fs.IntVar(&c.MaxConns, "max-conns", d.MaxConns, "open connections to the agent API; more are closed at once")
	fs.IntVar(&c.MaxUnauthConns, "max-unauth-conns", 0, "of --max-conns, how many may be unauthenticated (0: three quarters); the rest is kept for agents")
	fs.DurationVar(&c.HeaderTimeout, "header-timeout", d.HeaderTimeout, "time to send a request's headers (and the TLS handshake)")
	fs.DurationVar(&c.BodyTimeout, "body-timeout", d.BodyTimeout, "time to send a request body other than an upload (uploads have --min-upload-rate)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", d.IdleTimeout, "an idle keep-alive connection is closed after this time")
	fs.Float64Var(&c.StoreWriteRate, "store-write-rate", 0, "most write requests per second to the store (puts, deletes, compare-and-swaps; 0: unlimited); over it requests wait")
	fs.DurationVar(&c.SessionHeartbeat, "session-heartbeat", d.SessionHeartbeat, "how often agents beat in an upload session (tests)")
	_ = fs.MarkHidden("session-heartbeat")
	fs.Float64Var(&c.StoreReadRate, "store-read-rate", 0, "most read requests per second to the store (gets, stats, lists; 0: unlimited); over it requests wait")
	fs.BoolVar(&c.DirectDownloads, "direct-downloads", false, "answer agents' large pack reads with a redirect to a presigned URL of the s3:// store, so restore traffic bypasses cofferd (agents must reach the store)")
	fs.StringVar(&c.DirectEndpoint, "direct-downloads-endpoint", "", "the store's address as agents reach it, https://host[:port] (default: the --store endpoint)")
	return c
}

// StoreRates returns the store's request-rate caps (--store-write-rate,
// --store-read-rate).
func (c *ServeConfig) StoreRates() store.RateLimits {
	return store.RateLimits{Write: c.StoreWriteRate, Read: c.StoreReadRate}
}

// IsLoopback reports whether a listen address binds only to loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Direct returns the direct-download policy (--direct-downloads).
func (c *ServeConfig) Direct() DirectDownloads {
	return DirectDownloads{Enabled: c.DirectDownloads}.withDefaults()
}

// TLS reports whether TLS is configured.
func (c *ServeConfig) TLS() bool { return c.TLSCert != "" }

// Validate checks the flags and computes the limits.
func (c *ServeConfig) Validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("--listen %q: %v", c.Listen, err)
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			return fmt.Errorf("--metrics-listen %q: %v", c.MetricsListen, err)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if c.DirectEndpoint != "" {
		if !c.DirectDownloads {
			return errors.New("--direct-downloads-endpoint needs --direct-downloads")
		}
		if _, _, err := store.ParsePublicEndpoint(c.DirectEndpoint); err != nil {
			return fmt.Errorf("--direct-downloads-endpoint: %w", err)
		}
	}
	if !c.TLS() && !c.AllowPlainHTTP && !IsLoopback(c.Listen) {
		return fmt.Errorf("refusing plain HTTP on %s: give --tls-cert and --tls-key, listen on a loopback address (--listen 127.0.0.1:8443), or pass --allow-plain-http behind a TLS proxy", c.Listen)
	}
	l := DefaultLimits()
	for _, v := range []struct {
		name string
		n    int
		dst  *int
	}{{"--tenant-uploads", c.TenantUploads, &l.TenantUploads}, {"--tenant-downloads", c.TenantDownloads, &l.TenantDownloads},
		{"--tenant-burst", c.TenantBurst, &l.TenantBurst}, {"--global-uploads", c.GlobalUploads, &l.GlobalUploads}} {
		if v.n < 1 {
			return fmt.Errorf("%s must be at least 1", v.name)
		}
		*v.dst = v.n
	}
	if c.TenantRPS <= 0 {
		return errors.New("--tenant-rps must be positive")
	}
	l.TenantRPS = c.TenantRPS
	size, err := humanize.ParseBytes(c.MaxObjectSize)
	if err != nil || size < 1<<20 || size > 5<<30 {
		return fmt.Errorf("--max-object-size %q: want a size from 1MiB to 5GiB", c.MaxObjectSize)
	}
	l.MaxObjectSize = int64(size)
	rate := strings.TrimSuffix(c.MinUploadRate, "/s")
	if rate == "0" {
		l.MinUploadRate = 0
	} else {
		r, err := humanize.ParseBytes(rate)
		if err != nil || r > 1<<30 {
			return fmt.Errorf("--min-upload-rate %q: want a rate such as 32KiB/s, or 0", c.MinUploadRate)
		}
		l.MinUploadRate = int64(r)
	}
	if c.AuthCacheTTL < 0 || c.AuthCacheTTL > time.Minute {
		return errors.New("--auth-cache-ttl must be between 0 and 1m")
	}
	l.AuthCacheTTL = c.AuthCacheTTL
	if c.ShutdownTimeout <= 0 {
		return errors.New("--shutdown-timeout must be positive")
	}
	if err := c.connLimits(&l); err != nil {
		return err
	}
	if err := c.StoreRates().Validate(); err != nil {
		return fmt.Errorf("--store-write-rate, --store-read-rate: %w", err)
	}
	if c.SessionHeartbeat < time.Second || c.SessionHeartbeat > 10*time.Minute {
		return errors.New("--session-heartbeat must be between 1s and 10m")
	}
	l.SessionHeartbeat = c.SessionHeartbeat
	c.limits = l
	return nil
}

// connLimits checks the connection flags into l.
func (c *ServeConfig) connLimits(l *Limits) error {
	if c.MaxConns < 2 {
		return errors.New("--max-conns must be at least 2")
	}
	if c.MaxUnauthConns < 0 || c.MaxUnauthConns >= c.MaxConns {
		return fmt.Errorf("--max-unauth-conns must be below --max-conns (%d), or 0 for three quarters of it", c.MaxConns)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--header-timeout", c.HeaderTimeout}, {"--body-timeout", c.BodyTimeout}, {"--idle-timeout", c.IdleTimeout}} {
		if d.v < 100*time.Millisecond || d.v > time.Hour {
			return fmt.Errorf("%s %s: want a duration from 100ms to 1h", d.name, d.v)
		}
	}
	l.MaxConns, l.MaxUnauthConns = c.MaxConns, c.MaxUnauthConns
	l.HeaderTimeout, l.BodyTimeout, l.IdleTimeout = c.HeaderTimeout, c.BodyTimeout, c.IdleTimeout
	return nil
}

// Limits returns the limits Validate computed.
func (c *ServeConfig) Limits() Limits { return c.limits }
