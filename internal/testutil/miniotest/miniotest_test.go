package miniotest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/storeurl"
)

func TestBinaryPath(t *testing.T) {
	t.Setenv(EnvBinary, "/opt/minio")
	if got := BinaryPath(); got != "/opt/minio" {
		t.Errorf("with %s set: %q", EnvBinary, got)
	}
	t.Setenv(EnvBinary, "")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if got := BinaryPath(); got != "/xdg/coffer-dev/bin/minio" {
		t.Errorf("with XDG_CACHE_HOME: %q", got)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if got := BinaryPath(); got != "/home/u/.cache/coffer-dev/bin/minio" {
		t.Errorf("with HOME only: %q", got)
	}
}

// recordTB records Skip and Fatal instead of ending the test.
type recordTB struct {
	testing.TB
	skipped, fatal string
}

func (r *recordTB) Helper()                           {}
func (r *recordTB) Skip(args ...any)                  { r.skipped = fmt.Sprint(args...) }
func (r *recordTB) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recordTB) Fatal(args ...any)                 { r.fatal = fmt.Sprint(args...) }

func TestMissingBinarySkipsOrFailsInCI(t *testing.T) {
	t.Setenv(EnvBinary, filepath.Join(t.TempDir(), "no-minio-here"))
	s, stop, err := StartMain()
	if err != nil {
		t.Fatalf("StartMain without a binary = %v; want a stand-in", err)
	}
	defer stop()

	t.Setenv(EnvCI, "")
	r := &recordTB{TB: t}
	s.Require(r)
	if !strings.Contains(r.skipped, "make minio") || r.fatal != "" {
		t.Errorf("outside CI: skipped %q, fatal %q; want a skip naming `make minio`", r.skipped, r.fatal)
	}

	t.Setenv(EnvCI, "true")
	r = &recordTB{TB: t}
	s.Require(r)
	if !strings.Contains(r.fatal, "make minio") || r.skipped != "" {
		t.Errorf("under CI: skipped %q, fatal %q; want a failure naming `make minio`", r.skipped, r.fatal)
	}
}

func TestStartServesAndStopCleansUp(t *testing.T) {
	s := Start(t)
	if host, _, err := net.SplitHostPort(s.Endpoint); err != nil || host != "127.0.0.1" {
		t.Fatalf("Endpoint %q is not on 127.0.0.1", s.Endpoint)
	}
	if os.Getenv(EnvAccessKey) != s.AccessKey || os.Getenv(EnvSecretKey) != s.SecretKey {
		t.Error("credentials not in the environment")
	}
	raw := s.NewBucket(t)
	tg, err := storeurl.Parse(raw)
	if err != nil || tg.S3 == nil || tg.S3.Secure || tg.S3.Endpoint != s.Endpoint {
		t.Fatalf("NewBucket URL %q parses to %+v, %v", raw, tg.S3, err)
	}
	ok, err := s.Client(t).BucketExists(t.Context(), tg.S3.Bucket)
	if err != nil || !ok {
		t.Fatalf("bucket %s exists = %v, %v", tg.S3.Bucket, ok, err)
	}
	st, err := storeurl.OpenProvider(t.Context(), raw, storeurl.Options{Create: false})
	if err != nil {
		t.Fatalf("storeurl.OpenProvider(%s): %v", raw, err)
	}
	st.Close()
	if other := s.NewBucket(t); other == raw {
		t.Error("NewBucket returned the same bucket twice")
	}

	dir := s.dir
	s.Stop()
	select {
	case <-s.exited:
	default:
		t.Error("process still running after Stop")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data directory %s still there after Stop (%v)", dir, err)
	}
	if c, err := net.Dial("tcp", s.Endpoint); err == nil {
		c.Close()
		t.Error("port still answers after Stop")
	}
	s.Stop() // idempotent
}
