package store_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/storeurl"
)

// TestS3PresignGet: a presigned URL reads the object, a range of it with
// a Range header, and nothing else; with a public endpoint it names that
// endpoint and still reads the object there.
func TestS3PresignGet(t *testing.T) {
	srv := minioServer(t)
	raw := srv.NewBucket(t)
	s := openURL(t, raw)
	defer s.Close()
	data := bytes.Repeat([]byte("coffer presign "), 10000)
	if err := s.Put(t.Context(), "data/ab/obj", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	p, ok := store.As[store.Presigner](s)
	if !ok {
		t.Fatal("the S3 store does not presign")
	}
	u, err := p.PresignGet(t.Context(), "data/ab/obj", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(u.String(), srv.SecretKey) {
		t.Fatal("the presigned URL holds the secret key")
	}
	if got := presignedGet(t, u.String(), "bytes=15-29", http.StatusPartialContent); !bytes.Equal(got, data[15:30]) {
		t.Fatalf("range read %q, want %q", got, data[15:30])
	}
	if got := presignedGet(t, u.String(), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatal("whole read differs")
	}
	// The signature covers the key: another object is refused.
	other := strings.Replace(u.String(), "data/ab/obj", "data/ab/ob2", 1)
	presignedGet(t, other, "", http.StatusForbidden)
	for _, bad := range []time.Duration{0, -time.Second, store.MaxPresignExpiry + time.Second} {
		if _, err := p.PresignGet(t.Context(), "data/ab/obj", bad); err == nil {
			t.Errorf("expiry %s accepted", bad)
		}
	}
	if _, err := p.PresignGet(t.Context(), "../x", time.Minute); err == nil {
		t.Error("an invalid name was presigned")
	}

	// Public endpoint: the same server under another name.
	tgt, err := storeurl.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	cfg := *tgt.S3
	cfg.AccessKey, cfg.SecretKey = srv.AccessKey, srv.SecretKey
	public := strings.Replace(srv.Endpoint, "127.0.0.1", "localhost", 1)
	cfg.PublicEndpoint, cfg.PublicSecure = public, false
	ps, err := store.NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pu, err := ps.PresignGet(t.Context(), "data/ab/obj", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if pu.Host != public || pu.Scheme != "http" {
		t.Fatalf("presigned URL names %s://%s, want http://%s", pu.Scheme, pu.Host, public)
	}
	if got := presignedGet(t, pu.String(), "bytes=0-9", http.StatusPartialContent); !bytes.Equal(got, data[:10]) {
		t.Fatalf("read %q through the public endpoint", got)
	}
}

func presignedGet(t *testing.T, u, rng string, want int) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d", rng, resp.StatusCode, want)
	}
	return b
}

// TestPresignThroughDecorators: the rate cap, the object lock, counting and
// retry pass presigning through; the bandwidth limit and the fault
// injector hide it, so a limit or a fault is never bypassed.
func TestPresignThroughDecorators(t *testing.T) {
	srv := minioServer(t)
	s := openURL(t, srv.NewBucket(t))
	defer s.Close()
	rl, err := store.WithRateLimit(s, store.RateLimits{Read: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]store.Store{
		"rate limit": rl, "counting": store.NewCounting(s), "retry": store.WithRetry(s, store.DefaultRetry, nil, nil),
	} {
		if _, ok := store.As[store.Presigner](st); !ok {
			t.Errorf("%s hides presigning", name)
		}
	}
	if _, ok := store.As[store.Presigner](store.WithBandwidth(s, nil)); ok {
		t.Error("the bandwidth limit passes presigning through")
	}
	if _, ok := store.As[store.Presigner](store.NewFaulty(s)); ok {
		t.Error("the fault injector passes presigning through")
	}
	local, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := store.As[store.Presigner](store.NewCounting(local)); ok {
		t.Error("a local store presigns")
	}
}

func TestParsePublicEndpoint(t *testing.T) {
	for _, c := range []struct {
		in, host string
		secure   bool
		ok       bool
	}{
		{"https://s3.example.com", "s3.example.com", true, true},
		{"https://s3.example.com:9443/", "s3.example.com:9443", true, true},
		{"http://127.0.0.1:9000", "127.0.0.1:9000", false, true},
		{"http://s3.example.com", "", false, false},
		{"https://user:pw@s3.example.com", "", false, false},
		{"https://s3.example.com/bucket", "", false, false},
		{"https://s3.example.com?x=1", "", false, false},
		{"ftp://s3.example.com", "", false, false},
		{"s3.example.com", "", false, false},
	} {
		host, secure, err := store.ParsePublicEndpoint(c.in)
		if (err == nil) != c.ok || host != c.host || secure != c.secure {
			t.Errorf("%q: %q %v %v", c.in, host, secure, err)
		}
	}
}
