package storeurl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// Environment variables that hold S3 credentials. Secrets never come from
// the repository URL, which ends up in argv, shell history and logs.
const (
	EnvAccessKey    = "AWS_ACCESS_KEY_ID"
	EnvSecretKey    = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken = "AWS_SESSION_TOKEN"
)

// Target is a parsed repository URL: exactly one of Dir, S3 and Vault is
// set.
type Target struct {
	Dir   string          // absolute or relative directory of a local store
	S3    *store.S3Config // S3 store, without credentials
	Vault *url.URL        // vault base URL: https://host[:port][/base] (http only on loopback)
}

const urlForms = "use file:///dir, s3://host:port/bucket/prefix or https://vault-host[:port]"

// Parse parses a repository URL:
//
//	file:///abs/dir                              a local directory
//	some/dir, /abs/dir                           a local directory (no scheme)
//	s3://host[:port]/bucket[/prefix][?tls=false&region=r]
//	https://host[:port][/base]                   a vault (cofferd)
//	http://127.0.0.1[:port][/base]               a vault on a loopback address
//
// S3 uses HTTPS unless tls=false. A vault URL takes no query: plain http
// is refused unless the host is a loopback address, since the agent's
// credential would travel in clear text. Error messages never repeat the URL's
// user-info part.
func Parse(raw string) (Target, error) {
	if raw == "" {
		return Target{}, fmt.Errorf("empty repository URL: %s", urlForms)
	}
	scheme, _, hasScheme := strings.Cut(raw, "://")
	if !hasScheme || !isScheme(scheme) {
		if s, _, ok := strings.Cut(raw, ":"); ok && (s == "s3" || s == "file" || s == "https" || s == "http") {
			return Target{}, fmt.Errorf("malformed repository URL (no \"//\" after %q): %s", s+":", urlForms)
		}
		return Target{Dir: filepath.Clean(raw)}, nil
	}
	switch strings.ToLower(scheme) {
	case "file", "s3", "https", "http":
	default:
		return Target{}, fmt.Errorf("unsupported repository URL scheme %q: %s", scheme, urlForms)
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL, which may hold a secret.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Target{}, fmt.Errorf("invalid repository URL: %v", err)
	}
	if u.User != nil {
		return Target{}, fmt.Errorf("repository URL must not contain credentials (secrets never go in argv or URLs): remove the part before \"@\" and set %s and %s in the environment", EnvAccessKey, EnvSecretKey)
	}
	if u.Fragment != "" || u.RawFragment != "" {
		return Target{}, errors.New("invalid repository URL: unexpected \"#\" fragment")
	}
	switch u.Scheme {
	case "file":
		return parseFileURL(u)
	case "https", "http":
		v, err := vaultclient.CheckURL(u)
		if err != nil {
			return Target{}, err
		}
		return Target{Vault: v}, nil
	}
	return parseS3URL(u)
}

// isScheme reports whether s is a URL scheme (RFC 3986 section 3.1).
func isScheme(s string) bool {
	for i, c := range []byte(s) {
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

func parseFileURL(u *url.URL) (Target, error) {
	if u.Host != "" && u.Host != "localhost" {
		return Target{}, fmt.Errorf("file URL names host %q: use file:///absolute/dir (three slashes)", u.Host)
	}
	if u.RawQuery != "" {
		return Target{}, errors.New("file URL takes no query parameters")
	}
	if u.Path == "" || !filepath.IsAbs(u.Path) {
		return Target{}, errors.New("file URL needs an absolute directory: file:///absolute/dir")
	}
	return Target{Dir: filepath.Clean(u.Path)}, nil
}

func parseS3URL(u *url.URL) (Target, error) {
	if u.Host == "" {
		return Target{}, fmt.Errorf("s3 URL needs a host: %s", urlForms)
	}
	if u.Port() != "" {
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			return Target{}, fmt.Errorf("s3 URL has invalid port %q", u.Port())
		}
	}
	bucket, prefix, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if bucket == "" {
		return Target{}, fmt.Errorf("s3 URL needs a bucket: %s", urlForms)
	}
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return Target{}, fmt.Errorf("s3 URL: invalid bucket name %q: %v", bucket, err)
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if err := checkS3Prefix(prefix); err != nil {
		return Target{}, err
	}
	cfg := &store.S3Config{Endpoint: u.Host, Bucket: bucket, Prefix: prefix, Secure: true}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Target{}, fmt.Errorf("s3 URL: invalid query: %v", err)
	}
	for k, v := range q {
		if len(v) != 1 {
			return Target{}, fmt.Errorf("s3 URL: parameter %q given %d times", k, len(v))
		}
		switch k {
		case "tls":
			b, err := strconv.ParseBool(v[0])
			if err != nil {
				return Target{}, fmt.Errorf("s3 URL: tls=%q: want true or false", v[0])
			}
			cfg.Secure = b
		case "region":
			if v[0] == "" {
				return Target{}, errors.New("s3 URL: empty region")
			}
			cfg.Region = v[0]
		default:
			return Target{}, fmt.Errorf("s3 URL: unknown parameter %q (known: tls, region)", k)
		}
	}
	return Target{S3: cfg}, nil
}

// checkS3Prefix accepts "" or slash-separated segments of [A-Za-z0-9._-],
// none empty, "." or "..".
func checkS3Prefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > 512 {
		return errors.New("s3 URL: key prefix longer than 512 bytes")
	}
	for _, seg := range strings.Split(prefix, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("s3 URL: invalid key prefix %q: empty, \".\" or \"..\" segment", prefix)
		}
		for _, c := range []byte(seg) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return fmt.Errorf("s3 URL: invalid key prefix %q: use letters, digits, '.', '_', '-' and '/'", prefix)
			}
		}
	}
	return nil
}

// Options are the options of Open, OpenProvider and Decorate.
type Options struct {
	// Create makes a missing directory or bucket (a vault has nothing to
	// make: enrollment made the tenant).
	Create bool
	// Credential is the agent credential for a vault; "" falls back to
	// COFFER_CREDENTIAL.
	Credential vaultapi.Secret
	// CAFile is a PEM file of CA certificates for a vault; "" falls back to
	// COFFER_VAULT_CA (and then the system roots).
	CAFile string
	// Retry is how the retry layer (Open, Decorate) and a vault's first
	// request (the tenant check) retry; the zero value means
	// store.DefaultRetry.
	Retry store.RetryPolicy
	// Clock and Log are the retry layer's (nil: the real clock, and retry
	// notices discarded). The vault's tenant check uses neither, as before.
	Clock clock.Clock
	Log   *slog.Logger
	// ObjectLock, when its Mode is set, locks the objects its Match
	// selects as they are put (store.WithObjectLock, in Open). It needs an
	// s3:// store whose bucket was made with Object Lock: opening checks
	// the bucket's lock configuration (and Create makes the bucket with
	// it), and Delete then removes every version of a key.
	ObjectLock store.LockPolicy
	// Rates caps the provider's request rate (store.WithRateLimit);
	// the zero value caps nothing.
	Rates store.RateLimits
	// PublicEndpoint, for an s3:// store, is the https://host[:port] that
	// presigned URLs name (store.S3Config.PublicEndpoint); it is an error
	// for any other store.
	PublicEndpoint string
	// DirectFailure hears, once, why a vault client stopped reading from
	// the vault's store directly (direct downloads); nil logs it to Log.
	DirectFailure func(error)
	// Bandwidth, when set, limits the bytes of put and get bodies (one
	// Bandwidth shared by every store opened with it shares the limit).
	Bandwidth *store.Bandwidth
}

// OpenProvider opens the store a repository URL names (see Parse), with
// none of the decorators. S3 credentials come from AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN if set). With Create, a missing directory or bucket is
// made; without, it is an ErrNotFound error. For S3 this checks the bucket
// over the network, and for a vault the credential (GET /v1/tenant), so bad
// credentials fail here with ErrDenied.
func OpenProvider(ctx context.Context, rawURL string, o Options) (store.Store, error) {
	create := o.Create
	t, err := Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if t.Vault != nil {
		if o.ObjectLock.Mode != store.LockNone {
			return nil, errors.New("object lock is set on the vault's own store, not through a vault URL")
		}
		if o.PublicEndpoint != "" {
			return nil, errors.New("a public endpoint is set on the vault's own store, not through a vault URL")
		}
		return openVault(ctx, t.Vault, o)
	}
	if t.S3 == nil && o.ObjectLock.Mode != store.LockNone {
		return nil, fmt.Errorf("object lock needs an s3:// store in a bucket made with Object Lock; %s cannot lock objects", rawURL)
	}
	if t.S3 == nil && o.PublicEndpoint != "" {
		return nil, fmt.Errorf("a public endpoint for presigned URLs needs an s3:// store; %s cannot presign", rawURL)
	}
	if t.S3 == nil {
		l, err := store.OpenLocal(t.Dir, create)
		if err != nil {
			return nil, err
		}
		return l, nil
	}
	cfg := *t.S3
	cfg.AccessKey = os.Getenv(EnvAccessKey)
	cfg.SecretKey = os.Getenv(EnvSecretKey)
	cfg.SessionToken = os.Getenv(EnvSessionToken)
	cfg.ObjectLock = o.ObjectLock.Mode != store.LockNone
	if o.PublicEndpoint != "" {
		if cfg.PublicEndpoint, cfg.PublicSecure, err = store.ParsePublicEndpoint(o.PublicEndpoint); err != nil {
			return nil, err
		}
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, fmt.Errorf("%s: S3 credentials missing: set %s and %s in the environment: %w",
			cfg, EnvAccessKey, EnvSecretKey, store.ErrDenied)
	}
	s, err := store.OpenS3(ctx, cfg, create)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func openVault(ctx context.Context, base *url.URL, o Options) (store.Store, error) {
	cfg := vaultclient.Config{BaseURL: base, Credential: o.Credential, CAFile: o.CAFile}
	noDirect, err := vaultclient.DirectFromEnv()
	if err != nil {
		return nil, err
	}
	cfg.NoDirect = noDirect
	cfg.OnDirectFailure = o.DirectFailure
	if cfg.OnDirectFailure == nil && o.Log != nil {
		cfg.OnDirectFailure = func(err error) {
			o.Log.Warn("direct downloads from the vault's store failed; reading through the vault from now on", "err", err)
		}
	}
	if cfg.Credential == "" {
		cfg.Credential = vaultapi.Secret(os.Getenv(vaultclient.EnvCredential))
	}
	if cfg.CAFile == "" {
		cfg.CAFile = os.Getenv(vaultclient.EnvVaultCA)
	}
	v, err := vaultclient.New(cfg)
	if err != nil {
		return nil, err
	}
	// The check is a request like any other: a vault that is throttling
	// this tenant (429) or briefly unavailable is waited for, as the
	// retry layer waits for every later request.
	if err := store.Do(ctx, retryPolicy(o), nil, nil, "tenant check", "", func() error { return v.TenantCheck(ctx) }); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}
