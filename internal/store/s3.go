package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MaxS3ObjectSize is the largest object S3.Put accepts: the S3 limit for a
// single PUT. Put never uses multipart upload (see S3).
const MaxS3ObjectSize = 5 << 30

// S3Config says where an S3 store lives and how to sign requests.
// String prints it without credentials.
type S3Config struct {
	Endpoint string // host or host:port, no scheme
	Bucket   string
	Prefix   string // key prefix inside the bucket, without slashes at the ends; may be ""
	Region   string // "" lets the client discover it
	Secure   bool   // HTTPS

	AccessKey    string
	SecretKey    string
	SessionToken string

	// ObjectLock says the bucket was made with Object Lock (hence
	// versioning): OpenS3 checks its lock configuration (and makes a
	// missing bucket with it), and Delete removes every version of a key,
	// failing with ErrLocked on a version under retention. See lock_s3.go.
	ObjectLock bool

	// Transport replaces the HTTP transport (tests); nil uses minio-go's default.
	Transport http.RoundTripper

	// PublicEndpoint, when set, is the host[:port] that presigned URLs
	// (PresignGet) name instead of Endpoint: the address at which agents
	// reach the bucket when the vault reaches it on a private one.
	// PublicSecure says whether it uses TLS.
	PublicEndpoint string
	PublicSecure   bool
}

// String returns the repository URL of the store, without credentials.
func (c S3Config) String() string {
	u := url.URL{Scheme: "s3", Host: c.Endpoint, Path: "/" + c.Bucket}
	if c.Prefix != "" {
		u.Path += "/" + c.Prefix
	}
	q := url.Values{}
	if c.Region != "" {
		q.Set("region", c.Region)
	}
	if !c.Secure {
		q.Set("tls", "false")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// GoString keeps %#v from printing credentials.
func (c S3Config) GoString() string { return "store.S3Config(" + c.String() + ")" }

// S3 is a store in an S3 bucket, below a key prefix: object name n is key
// "<prefix>/<n>".
//
// The minio-go client is built with MaxRetries = 1, so it sends every request
// once: Retry is the only retry layer, and it knows which errors are
// permanent. Put is a single PUT with If-None-Match: * (create-only and
// atomic); multipart upload is disabled because a multipart upload would not
// carry that condition reliably, which caps objects at MaxS3ObjectSize.
// Neither Content-MD5 nor a SigV4 payload hash is computed (each would cost
// the client and the server a pass over every pack): the body carries a
// CRC32C trailer that the server checks, TLS protects it in transit, and
// Coffer's objects are named by their SHA-256 and authenticated besides.
type S3 struct {
	cfg     S3Config
	client  *minio.Client
	core    minio.Core
	presign struct {
		sync.Mutex
		client *minio.Client // for PublicEndpoint, made on first use
	}
}

// NewS3 builds an S3 store without contacting the server. OpenS3 also checks
// the bucket.
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3 store: endpoint and bucket are required")
	}
	cfg.Prefix = strings.Trim(cfg.Prefix, "/")
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:     cfg.Secure,
		Region:     cfg.Region,
		Transport:  cfg.Transport,
		MaxRetries: 1, // store.Retry retries; see the type comment
	})
	if err != nil {
		return nil, fmt.Errorf("s3 store %s: %w", cfg, err)
	}
	return &S3{cfg: cfg, client: client, core: minio.Core{Client: client}}, nil
}

// OpenS3 builds an S3 store and checks that its bucket exists. With create it
// makes a missing bucket.
func OpenS3(ctx context.Context, cfg S3Config, create bool) (*S3, error) {
	s, err := NewS3(cfg)
	if err != nil {
		return nil, err
	}
	ok, err := s.client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("checking bucket %q at %s: %w", cfg.Bucket, s.Location(), translateS3(err))
	}
	if ok {
		return checked(s, s.checkObjectLock(ctx))
	}
	if !create {
		return nil, fmt.Errorf("bucket %q does not exist at %s (initialise the repository first): %w",
			cfg.Bucket, s.Location(), ErrNotFound)
	}
	err = s.client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region, ObjectLocking: cfg.ObjectLock})
	var er minio.ErrorResponse
	if err != nil && !(errors.As(err, &er) && er.Code == "BucketAlreadyOwnedByYou") {
		return nil, fmt.Errorf("creating bucket %q at %s: %w", cfg.Bucket, s.Location(), translateS3(err))
	}
	return checked(s, s.checkObjectLock(ctx))
}

// checked returns s, or nil and err.
func checked(s *S3, err error) (*S3, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Location implements Store.
func (s *S3) Location() string { return s.cfg.String() }

// Close implements Store.
func (s *S3) Close() error { return nil }

func (s *S3) key(name string) string {
	if s.cfg.Prefix == "" {
		return name
	}
	return s.cfg.Prefix + "/" + name
}

// ErrShortSource reports a Put source that ended before its declared size.
var (
	ErrShortSource    = errors.New("source ended before its declared size")
	errSourceReleased = errors.New("request body read after the put returned")
)

// PutSource bounds r to size bytes and records whether r ended early, so
// a provider's Put can tell a short source from a network failure however
// its HTTP client wraps the error.
type PutSource struct {
	r     io.ReaderAt
	size  int64
	short atomic.Bool

	// An HTTP client may still read a request body after the request
	// returned (Go's transport writes it from another goroutine, and stops
	// only when the server has answered early). The caller owns r again
	// once Put returns, so finish waits for a read in progress and makes
	// every later one fail instead of touching r.
	mu   sync.RWMutex
	done bool
}

// NewPutSource returns the source of a Put of size bytes read from r.
func NewPutSource(r io.ReaderAt, size int64) *PutSource {
	return &PutSource{r: r, size: size}
}

// Short reports whether r ended before size bytes.
func (s *PutSource) Short() bool { return s.short.Load() }

// Finish ends every use of the source; Put defers it.
func (s *PutSource) Finish() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
}

func (s *PutSource) ReadAt(p []byte, off int64) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.done {
		return 0, errSourceReleased
	}
	if off >= s.size {
		return 0, io.EOF
	}
	if rem := s.size - off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := s.r.ReadAt(p, off)
	if n < len(p) && (err == nil || err == io.EOF) {
		s.short.Store(true)
		return n, ErrShortSource
	}
	if n == len(p) && err == io.EOF {
		err = nil
	}
	return n, err
}

// Put implements Store.
func (s *S3) Put(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	return s.put(ctx, name, r, size, Lock{})
}

// put is Put, with the object's retention set by the PUT when lock has a
// mode.
func (s *S3) put(ctx context.Context, name string, r io.ReaderAt, size int64, lock Lock) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if size < 0 || size > MaxS3ObjectSize {
		return &PermanentError{Err: fmt.Errorf("%s: size %d outside 0..%d bytes", name, size, int64(MaxS3ObjectSize))}
	}
	src := NewPutSource(r, size)
	defer src.Finish()
	opts := minio.PutObjectOptions{
		ContentType:      "application/octet-stream",
		DisableMultipart: true,
		// No SigV4 payload hash: a CRC32C trailer (cheap, hardware) guards
		// the body instead, and the object is named by its SHA-256 anyway.
		DisableContentSha256: true,
		PartSize:             MaxS3ObjectSize,
	}
	if lock.Mode != LockNone {
		opts.Mode, opts.RetainUntilDate = s3Mode(lock.Mode), lock.Until
	}
	opts.SetMatchETagExcept("*")
	// The exact size always: with -1 minio-go allocates large part buffers.
	_, err := s.client.PutObject(ctx, s.cfg.Bucket, s.key(name), io.NewSectionReader(src, 0, size), size, opts)
	if err == nil {
		return nil
	}
	if src.Short() {
		return &PermanentError{Err: fmt.Errorf("%s: %w (want %d bytes)", name, ErrShortSource, size)}
	}
	return fmt.Errorf("%s: put: %w", name, translateLockS3(err))
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if off < 0 {
		return fmt.Errorf("%s: negative offset %d: %w", name, off, ErrInvalidRange)
	}
	if length == 0 {
		return GetEmpty(ctx, s, name, off, length, fn)
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		err := opts.SetRange(off, off+length-1)
		if err != nil {
			return fmt.Errorf("%s: %w (%v)", name, ErrInvalidRange, err)
		}
	case off > 0:
		err := opts.SetRange(off, 0)
		if err != nil {
			return fmt.Errorf("%s: %w (%v)", name, ErrInvalidRange, err)
		}
	}
	body, info, _, err := s.core.GetObject(ctx, s.cfg.Bucket, s.key(name), opts)
	if err != nil {
		err = translateS3(err)
		if errors.Is(err, ErrInvalidRange) && length < 0 {
			// "bytes=off-" with off at the end is unsatisfiable to S3,
			// but an empty read to Store.
			return GetEmpty(ctx, s, name, off, length, fn)
		}
		return fmt.Errorf("%s: get: %w", name, err)
	}
	defer body.Close()
	if length >= 0 && info.Size != length {
		// S3 shortens a range that runs past the end instead of failing.
		return fmt.Errorf("%s: range %d+%d runs past the end of the object: %w", name, off, length, ErrInvalidRange)
	}
	return fn(&exactReader{r: body, left: info.Size, name: name})
}

// NewExactReader returns a reader of the n bytes a provider's response
// body r announced for the object name: it fails when r ends early.
func NewExactReader(r io.Reader, n int64, name string) io.Reader {
	return &exactReader{r: r, left: n, name: name}
}

// exactReader fails a body that ends before the announced length.
type exactReader struct {
	r    io.Reader
	left int64
	name string
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF && e.left > 0 {
		return n, fmt.Errorf("%s: response body ended %d bytes early: %w", e.name, e.left, io.ErrUnexpectedEOF)
	}
	if err == io.EOF {
		err = nil // the next call reports EOF
	}
	if err != nil {
		err = fmt.Errorf("%s: reading: %w", e.name, translateS3(err))
	}
	return n, err
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, name string) (Info, error) {
	if err := ValidName(name); err != nil {
		return Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.cfg.Bucket, s.key(name), minio.StatObjectOptions{})
	if err != nil {
		return Info{}, fmt.Errorf("%s: stat: %w", name, translateS3(err))
	}
	return Info{Name: name, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// List implements Store. Keys under the store prefix that are not valid
// object names (written by something else) are skipped.
func (s *S3) List(ctx context.Context, prefix string, fn func(Info) error) error {
	return s.ListFrom(ctx, prefix, "", fn)
}

// ListFrom implements OrderedLister: S3 lists keys in byte order and starts
// after a given key (ListObjectsV2 StartAfter), so a caller paging through a
// large prefix does not list it from the start for every page.
func (s *S3) ListFrom(ctx context.Context, prefix, after string, fn func(Info) error) error {
	if err := ValidPrefix(prefix); err != nil {
		return err
	}
	if err := ValidPrefix(after); err != nil {
		return fmt.Errorf("list after %q: %w", truncate(after), err)
	}
	base := ""
	if s.cfg.Prefix != "" {
		base = s.cfg.Prefix + "/"
	}
	opts := minio.ListObjectsOptions{Prefix: base + prefix, Recursive: true}
	if after != "" {
		opts.StartAfter = base + after
	}
	lctx, cancel := context.WithCancel(ctx)
	ch := s.client.ListObjects(lctx, s.cfg.Bucket, opts)
	defer func() {
		// Stop the lister and let its goroutine finish.
		cancel()
		for range ch {
		}
	}()
	for obj := range ch {
		if obj.Err != nil {
			return fmt.Errorf("list %q: %w", prefix, translateS3(obj.Err))
		}
		name, ok := strings.CutPrefix(obj.Key, base)
		if !ok || !strings.HasPrefix(name, prefix) || name <= after || ValidName(name) != nil {
			continue
		}
		if err := fn(Info{Name: name, Size: obj.Size, ModTime: obj.LastModified}); err != nil {
			return err
		}
	}
	// The lister closes the channel without an error when ctx ends.
	return ctx.Err()
}

// Delete implements Store. S3 answers a delete of a missing key with
// success. In a bucket with Object Lock every version of the key is
// deleted (deleteVersions).
func (s *S3) Delete(ctx context.Context, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if s.cfg.ObjectLock {
		return s.deleteVersions(ctx, name)
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, s.key(name), minio.RemoveObjectOptions{}); err != nil {
		err = translateS3(err)
		if errors.Is(err, ErrNotFound) && !isNoSuchBucket(err) {
			return nil
		}
		return fmt.Errorf("%s: delete: %w", name, err)
	}
	return nil
}

func isNoSuchBucket(err error) bool {
	var er minio.ErrorResponse
	return errors.As(err, &er) && er.Code == "NoSuchBucket"
}

// s3Error keeps the S3 error for errors.As while errors.Is matches the
// sentinel it was translated to.
type s3Error struct {
	sentinel error
	hint     string
	err      minio.ErrorResponse
}

func (e *s3Error) Error() string {
	msg := e.sentinel.Error() + ": "
	if e.hint != "" {
		msg += e.hint + ": "
	}
	return msg + e.err.Code + ": " + e.err.Error()
}

func (e *s3Error) Is(target error) bool { return target == e.sentinel }
func (e *s3Error) Unwrap() error        { return e.err }

// translateS3 maps a minio-go error to the store sentinels. Errors that are
// no S3 error response (network failures, timeouts) stay as they are, which
// makes them transient; context errors stay as they are too.
func translateS3(err error) error {
	var er minio.ErrorResponse
	if err == nil || !errors.As(err, &er) {
		return err
	}
	wrap := func(sentinel error, hint string) error { return &s3Error{sentinel: sentinel, hint: hint, err: er} }
	switch er.Code {
	case "NoSuchKey", "NoSuchBucket", "NotFound":
		return wrap(ErrNotFound, "")
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
		"AccountProblem", "InvalidToken", "ExpiredToken", "ExpiredTokenException":
		return wrap(ErrDenied, "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket policy")
	case "InvalidRange":
		return wrap(ErrInvalidRange, "")
	case "PreconditionFailed":
		return wrap(ErrExists, "")
	case "XMinioStorageFull", "QuotaExceeded", "XMinioAdminBucketQuotaExceeded":
		return wrap(ErrNoSpace, "free space or raise the quota on the server, then run the command again")
	case "SlowDown", "SlowDownWrite", "SlowDownRead", "RequestTimeout", "InternalError",
		"ServiceUnavailable", "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled":
		return withCode(er, err)
	case "RequestTimeTooSkewed":
		return &PermanentError{Err: fmt.Errorf("this machine's clock is off; fix it, then run the command again: %w", withCode(er, err))}
	}
	switch {
	case er.StatusCode == http.StatusInsufficientStorage:
		return wrap(ErrNoSpace, "")
	case er.StatusCode == http.StatusNotFound:
		return wrap(ErrNotFound, "")
	case er.StatusCode == http.StatusForbidden || er.StatusCode == http.StatusUnauthorized:
		return wrap(ErrDenied, "")
	case er.StatusCode == http.StatusPreconditionFailed:
		return wrap(ErrExists, "")
	case er.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return wrap(ErrInvalidRange, "")
	case er.StatusCode == http.StatusRequestTimeout || er.StatusCode == http.StatusTooManyRequests:
		return withCode(er, err)
	case er.StatusCode >= 400 && er.StatusCode < 500:
		return &PermanentError{Err: withCode(er, err)}
	case er.StatusCode == 0 && er.Code != "":
		// Raised by minio-go itself before sending (invalid argument,
		// entity too large, ...): sending again cannot help.
		return &PermanentError{Err: withCode(er, err)}
	}
	return withCode(er, err)
}

// withCode prefixes err with the S3 error code and HTTP status.
func withCode(er minio.ErrorResponse, err error) error {
	return fmt.Errorf("%s (HTTP %d): %w", er.Code, er.StatusCode, err)
}
