package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Presigner is a store that can hand out a URL from which anyone holding it
// may GET one object, with any Range, until the URL expires: the vault's
// direct downloads (FORMAT.md, "Direct downloads"). Computing the URL sends
// no request. A decorator forwards it only when the reads it would let by
// obey the decorator too: the rate cap waits for a read first, while the
// bandwidth limit and the fault injector hide it.
type Presigner interface {
	PresignGet(ctx context.Context, name string, expiry time.Duration) (*url.URL, error)
}

// MaxPresignExpiry is the longest life a presigned URL may have (SigV4
// allows seven days; a download starts within seconds of its redirect).
const MaxPresignExpiry = time.Hour

// PresignGet implements Presigner: a SigV4 query-string signature over the
// object's key, for the public endpoint when S3Config.PublicEndpoint is
// set, else for the endpoint the store talks to.
func (s *S3) PresignGet(ctx context.Context, name string, expiry time.Duration) (*url.URL, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	if expiry <= 0 || expiry > MaxPresignExpiry {
		return nil, fmt.Errorf("presigning %s: expiry %s outside (0, %s]", name, expiry, MaxPresignExpiry)
	}
	c, err := s.presignClient(ctx)
	if err != nil {
		return nil, err
	}
	u, err := c.PresignedGetObject(ctx, s.cfg.Bucket, s.key(name), expiry, nil)
	if err != nil {
		return nil, fmt.Errorf("presigning %s: %w", name, translateS3(err))
	}
	return u, nil
}

// presignClient is the client whose endpoint presigned URLs name. For a
// public endpoint it is made once, with the bucket's region set, so that
// presigning never asks that endpoint (which cofferd may not reach) for
// the bucket's location.
func (s *S3) presignClient(ctx context.Context) (*minio.Client, error) {
	if s.cfg.PublicEndpoint == "" {
		return s.client, nil
	}
	s.presign.Lock()
	defer s.presign.Unlock()
	if s.presign.client != nil {
		return s.presign.client, nil
	}
	region := s.cfg.Region
	if region == "" {
		r, err := s.client.GetBucketLocation(ctx, s.cfg.Bucket)
		if err != nil {
			return nil, fmt.Errorf("the region of bucket %q, for presigning: %w", s.cfg.Bucket, translateS3(err))
		}
		region = r
	}
	c, err := minio.New(s.cfg.PublicEndpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(s.cfg.AccessKey, s.cfg.SecretKey, s.cfg.SessionToken),
		Secure: s.cfg.PublicSecure,
		Region: region,
	})
	if err != nil {
		return nil, fmt.Errorf("public endpoint %s: %w", s.cfg.PublicEndpoint, err)
	}
	s.presign.client = c
	return c, nil
}

// IsLoopbackHost reports whether host is localhost or a loopback address.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ParsePublicEndpoint checks the public endpoint of direct downloads,
// https://host[:port] (or http:// on a loopback host, for tests and
// benchmarks), and returns its host[:port] and whether it uses TLS.
func ParsePublicEndpoint(raw string) (hostPort string, secure bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, fmt.Errorf("public endpoint %q: %w", raw, err)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") || u.Hostname() == "" {
		return "", false, fmt.Errorf("public endpoint %q: want https://host[:port], with no path, query or credentials", raw)
	}
	if err := SecureScheme(u); err != nil {
		return "", false, fmt.Errorf("public endpoint %q: %w", raw, err)
	}
	return u.Host, u.Scheme == "https", nil
}

// ErrPlainHTTP is SecureScheme's refusal of http:// to another host.
var ErrPlainHTTP = errors.New("plain http is allowed only on a loopback host: use https://")

// SecureScheme checks that u is https://, or http:// to a loopback host
// (tests, benchmarks, a store beside the process). Its errors are meant to
// be wrapped by the caller, which names what u is.
func SecureScheme(u *url.URL) error {
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if IsLoopbackHost(u.Hostname()) {
			return nil
		}
		return ErrPlainHTTP
	}
	return fmt.Errorf("scheme %q: use https://", u.Scheme)
}

// The decorators that change nothing a read does pass presigning through.

// PresignGet implements Presigner.
func (l *ObjectLock) PresignGet(ctx context.Context, name string, expiry time.Duration) (*url.URL, error) {
	return presignBelow(ctx, l.Store, name, expiry)
}

// PresignGet implements Presigner.
func (c *Counting) PresignGet(ctx context.Context, name string, expiry time.Duration) (*url.URL, error) {
	return presignBelow(ctx, c.Store, name, expiry)
}

// PresignGet implements Presigner.
func (r *Retry) PresignGet(ctx context.Context, name string, expiry time.Duration) (*url.URL, error) {
	return presignBelow(ctx, r.Store, name, expiry)
}

func presignBelow(ctx context.Context, s Store, name string, expiry time.Duration) (*url.URL, error) {
	p, ok := As[Presigner](s)
	if !ok {
		return nil, &PermanentError{Err: fmt.Errorf("store %s cannot presign", s.Location())}
	}
	return p.PresignGet(ctx, name, expiry)
}
