package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/testutil/miniotest"
)

// One MinIO serves the package, started by the first test that needs it.
var minioState struct {
	once sync.Once
	srv  *miniotest.Server
	stop func()
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if minioState.stop != nil {
		minioState.stop()
	}
	os.Exit(code)
}

func minioServer(t *testing.T) *miniotest.Server {
	t.Helper()
	minioState.once.Do(func() { minioState.srv, minioState.stop, minioState.err = miniotest.StartMain() })
	if minioState.err != nil {
		t.Fatal(minioState.err)
	}
	minioState.srv.Require(t)
	return minioState.srv
}

func openURL(t *testing.T, raw string) store.Store {
	t.Helper()
	s, err := storeurl.OpenProvider(t.Context(), raw, storeurl.Options{Create: false})
	if err != nil {
		t.Fatalf("Open(%s): %v", raw, err)
	}
	return s
}

func TestS3Conformance(t *testing.T) {
	srv := minioServer(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openURL(t, srv.NewBucket(t)) })
}

func TestS3ConformanceBucketRoot(t *testing.T) {
	srv := minioServer(t)
	storetest.Run(t, func(t *testing.T) store.Store {
		tg, err := storeurl.Parse(srv.NewBucket(t))
		if err != nil {
			t.Fatal(err)
		}
		return openURL(t, srv.URL(tg.S3.Bucket, ""))
	})
}

// ListFrom starts after the given name, in byte order, within the prefix
// and the store's own key prefix.
func TestS3ListFrom(t *testing.T) {
	srv := minioServer(t)
	tg, _ := storeurl.Parse(srv.NewBucket(t))
	s, other := openURL(t, srv.URL(tg.S3.Bucket, "repo")), openURL(t, srv.URL(tg.S3.Bucket, "repo0"))
	names := []string{"data/00/a", "data/00/b", "data/01/a", "data/ff/z", "index/x", "snapshots/y"}
	for _, n := range append(names, "config") {
		if err := s.Put(t.Context(), n, bytes.NewReader([]byte(n)), int64(len(n))); err != nil {
			t.Fatal(err)
		}
	}
	if err := other.Put(t.Context(), "data/00/c", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	ol, ok := s.(store.OrderedLister)
	if !ok {
		t.Fatalf("%T is not a store.OrderedLister", s)
	}
	list := func(prefix, after string) []string {
		var got []string
		if err := ol.ListFrom(t.Context(), prefix, after, func(i store.Info) error {
			if i.Size != int64(len(i.Name)) {
				t.Errorf("%s: size %d", i.Name, i.Size)
			}
			got = append(got, i.Name)
			return nil
		}); err != nil {
			t.Fatalf("ListFrom(%q, %q): %v", prefix, after, err)
		}
		return got
	}
	for _, c := range []struct {
		prefix, after string
		want          []string
	}{
		{"data/", "", names[:4]},
		{"data/", "data/00/a", names[1:4]},
		{"data/", "data/00/b", names[2:4]},
		{"data/", "data/00", names[:4]},
		{"data/", "data/ff/z", nil},
		{"data/", "index/", nil},
		{"", "data/01/a", names[3:]},
		{"index/", "data/00/a", []string{"index/x"}},
	} {
		if got := list(c.prefix, c.after); !slices.Equal(got, c.want) {
			t.Errorf("ListFrom(%q, %q) = %v, want %v", c.prefix, c.after, got, c.want)
		}
	}
	if err := ol.ListFrom(t.Context(), "data/", "../x", func(store.Info) error { return nil }); err == nil {
		t.Error("ListFrom accepted an after of ../x")
	}
}

func TestS3PrefixIsolation(t *testing.T) {
	srv := minioServer(t)
	tg, _ := storeurl.Parse(srv.NewBucket(t))
	b := tg.S3.Bucket
	a, a2, root := openURL(t, srv.URL(b, "repo")), openURL(t, srv.URL(b, "repo2")), openURL(t, srv.URL(b, ""))
	for _, s := range []store.Store{a, a2} {
		if err := s.Put(t.Context(), "config", bytes.NewReader([]byte(s.Location())), int64(len(s.Location()))); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []store.Store{a, a2} {
		got, err := store.ReadAll(t.Context(), s, "config")
		if err != nil || string(got) != s.Location() {
			t.Errorf("%s: config reads %q, %v; want its own", s.Location(), got, err)
		}
		var names []string
		_ = s.List(t.Context(), "", func(i store.Info) error { names = append(names, i.Name); return nil })
		if !slices.Equal(names, []string{"config"}) {
			t.Errorf("%s lists %v; want [config]", s.Location(), names)
		}
	}
	var names []string
	_ = root.List(t.Context(), "", func(i store.Info) error { names = append(names, i.Name); return nil })
	slices.Sort(names)
	if !slices.Equal(names, []string{"repo/config", "repo2/config"}) {
		t.Errorf("bucket root lists %v", names)
	}
}

func TestS3BadCredentials(t *testing.T) {
	srv := minioServer(t)
	raw := srv.NewBucket(t)
	tg, _ := storeurl.Parse(raw)
	for _, c := range []struct{ name, key, secret string }{
		{"wrong secret", srv.AccessKey, "not-the-secret-0123456789"},
		{"unknown key", "nobody-at-all", srv.SecretKey},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(storeurl.EnvAccessKey, c.key)
			t.Setenv(storeurl.EnvSecretKey, c.secret)
			if _, err := storeurl.OpenProvider(t.Context(), raw, storeurl.Options{Create: false}); !errors.Is(err, store.ErrDenied) {
				t.Errorf("Open = %v; want ErrDenied", err)
			}

			cfg := *tg.S3
			cfg.AccessKey, cfg.SecretKey, cfg.Region = c.key, c.secret, "us-east-1"
			rt := &countingTransport{}
			cfg.Transport = rt
			s3, err := store.NewS3(cfg)
			if err != nil {
				t.Fatal(err)
			}
			f := store.NewFaulty(s3)
			clock := &fakeClock{}
			r := store.WithRetry(f, store.DefaultRetry, clock, nil)
			_, err = r.Stat(t.Context(), "config")
			if !errors.Is(err, store.ErrDenied) || !store.IsPermanent(err) {
				t.Errorf("Stat = %v; want permanent ErrDenied", err)
			}
			err = r.Put(t.Context(), "config", bytes.NewReader([]byte("x")), 1)
			if !errors.Is(err, store.ErrDenied) {
				t.Errorf("Put = %v; want ErrDenied", err)
			}
			if f.Ops("stat") != 1 || f.Ops("put") != 1 || len(clock.Sleeps()) != 0 || rt.count() != 2 {
				t.Errorf("stat tried %d, put %d times, %d sleeps, %d HTTP requests; want 1, 1, 0, 2",
					f.Ops("stat"), f.Ops("put"), len(clock.Sleeps()), rt.count())
			}
		})
	}
}

func TestS3MissingBucket(t *testing.T) {
	srv := minioServer(t)
	raw := srv.URL("coffer-missing-bucket", "repo")
	_, err := storeurl.OpenProvider(t.Context(), raw, storeurl.Options{Create: false})
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Open of a missing bucket = %v; want ErrNotFound saying it does not exist", err)
	}
	s, err := storeurl.OpenProvider(t.Context(), raw, storeurl.Options{Create: true})
	if err != nil {
		t.Fatalf("Open(create) = %v", err)
	}
	if err := s.Put(t.Context(), "config", bytes.NewReader([]byte("c")), 1); err != nil {
		t.Fatal(err)
	}
	for _, create := range []bool{false, true} {
		s, err := storeurl.OpenProvider(t.Context(), raw, storeurl.Options{Create: create})
		if err != nil {
			t.Fatalf("Open(create=%v) of the existing bucket = %v", create, err)
		}
		if got, err := store.ReadAll(t.Context(), s, "config"); err != nil || string(got) != "c" {
			t.Errorf("reopened store reads %q, %v", got, err)
		}
	}
}

func TestS3LocationHasNoSecrets(t *testing.T) {
	srv := minioServer(t)
	raw := srv.NewBucket(t)
	s := openURL(t, raw)
	if s.Location() != raw {
		t.Errorf("Location = %q, want %q", s.Location(), raw)
	}
	tg, _ := storeurl.Parse(raw)
	cfg := *tg.S3
	cfg.AccessKey, cfg.SecretKey, cfg.SessionToken = srv.AccessKey, srv.SecretKey, "session-token-secret"
	s3, err := store.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{s.Location(), s3.Location(), fmt.Sprintf("%v %+v %#v %s", cfg, cfg, cfg, cfg)} {
		for _, secret := range []string{srv.AccessKey, srv.SecretKey, "session-token-secret"} {
			if strings.Contains(text, secret) {
				t.Errorf("%q contains a credential", text)
			}
		}
	}
}

// countingTransport counts requests and keeps their method, query and
// If-None-Match header.
type countingTransport struct {
	mu   sync.Mutex
	reqs []string
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.reqs = append(c.reqs, fmt.Sprintf("%s ?%s If-None-Match=%q", r.Method, r.URL.RawQuery, r.Header.Get("If-None-Match")))
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reqs)
}

func TestS3PutIsOneConditionalPut(t *testing.T) {
	srv := minioServer(t)
	tg, _ := storeurl.Parse(srv.NewBucket(t))
	cfg := *tg.S3
	cfg.AccessKey, cfg.SecretKey, cfg.Region = srv.AccessKey, srv.SecretKey, "us-east-1"
	rt := &countingTransport{}
	cfg.Transport = rt
	s, err := store.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pack := bytes.Repeat([]byte("pack"), 10<<20) // 40 MiB
	if err := s.Put(t.Context(), "data/00/pack", bytes.NewReader(pack), int64(len(pack))); err != nil {
		t.Fatal(err)
	}
	want := []string{`PUT ? If-None-Match="*"`}
	if !slices.Equal(rt.reqs, want) {
		t.Errorf("a 40 MiB Put sent %q; want %q", rt.reqs, want)
	}
	info, err := s.Stat(t.Context(), "data/00/pack")
	if err != nil || info.Size != int64(len(pack)) {
		t.Errorf("Stat = %+v, %v", info, err)
	}
}

// fakeS3 answers every request with one canned S3 error and counts requests.
func fakeS3(t *testing.T, status int, code string) (*store.S3, *int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>canned error</Message><RequestId>1</RequestId></Error>`, code)
	}))
	t.Cleanup(ts.Close)
	s, err := store.NewS3(store.S3Config{
		Endpoint: strings.TrimPrefix(ts.URL, "http://"), Bucket: "bucket", Prefix: "repo", Region: "us-east-1",
		AccessKey: "key", SecretKey: "secret",
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, &n
}

func TestS3ErrorTranslation(t *testing.T) {
	transient := errors.New("transient")
	cases := []struct {
		status int
		code   string
		want   error // a sentinel, transient, or a *PermanentError (matched by type)
	}{
		{404, "NoSuchKey", store.ErrNotFound},
		{404, "NoSuchBucket", store.ErrNotFound},
		{403, "AccessDenied", store.ErrDenied},
		{403, "InvalidAccessKeyId", store.ErrDenied},
		{403, "SignatureDoesNotMatch", store.ErrDenied},
		{416, "InvalidRange", store.ErrInvalidRange},
		{412, "PreconditionFailed", store.ErrExists},
		{507, "XMinioStorageFull", store.ErrNoSpace},
		{507, "InsufficientStorage", store.ErrNoSpace},
		{403, "QuotaExceeded", store.ErrNoSpace},
		{400, "InvalidArgument", &store.PermanentError{}},
		{400, "EntityTooSmall", &store.PermanentError{}},
		{403, "RequestTimeTooSkewed", &store.PermanentError{}},
		{503, "SlowDown", transient},
		{503, "ServiceUnavailable", transient},
		{500, "InternalError", transient},
		{408, "RequestTimeout", transient},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%d-%s", c.status, c.code), func(t *testing.T) {
			s, n := fakeS3(t, c.status, c.code)
			err := s.Put(t.Context(), "data/x", bytes.NewReader([]byte("abc")), 3)
			switch want := c.want.(type) {
			case *store.PermanentError:
				if !errors.As(err, &want) || !store.IsPermanent(err) {
					t.Errorf("Put = %v; want a PermanentError", err)
				}
			default:
				if want == transient {
					if err == nil || store.IsPermanent(err) {
						t.Errorf("Put = %v; want a transient error", err)
					}
				} else if !errors.Is(err, want) || !store.IsPermanent(err) {
					t.Errorf("Put = %v; want %v", err, want)
				}
			}
			if err != nil && !strings.Contains(err.Error(), c.code) {
				t.Errorf("error %q does not name the S3 code %s", err, c.code)
			}
			if *n != 1 {
				t.Errorf("%d HTTP requests; want 1 (minio-go must not retry)", *n)
			}
		})
	}
}

func TestS3NetworkErrorIsTransient(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	s, err := store.NewS3(store.S3Config{Endpoint: addr, Bucket: "bucket", Region: "us-east-1", AccessKey: "k", SecretKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	f := store.NewFaulty(s)
	clock := &fakeClock{}
	r := store.WithRetry(f, store.RetryPolicy{Attempts: 3, Base: 1, Max: 1}, clock, nil)
	_, err = r.Stat(t.Context(), "config")
	if err == nil || store.IsPermanent(err) || f.Ops("stat") != 3 {
		t.Errorf("Stat against a closed port = %v after %d attempts; want a transient error after 3", err, f.Ops("stat"))
	}
}

func TestS3ShortBodyIsError(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		w.Header().Set("ETag", `"0123"`)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(make([]byte, 40)) // and the connection closes
	}))
	defer ts.Close()
	s, err := store.NewS3(store.S3Config{
		Endpoint: strings.TrimPrefix(ts.URL, "http://"), Bucket: "bucket", Region: "us-east-1", AccessKey: "k", SecretKey: "s",
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.ReadAll(t.Context(), s, "data/x")
	if err == nil || store.IsPermanent(err) {
		t.Errorf("ReadAll of a truncated body = %d bytes, %v; want a transient error", len(got), err)
	}
}
