package miniotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Environment variables the harness reads and sets.
const (
	EnvBinary    = "COFFER_MINIO_BIN"      // path of the minio binary
	EnvCI        = "CI"                    // "true" turns a missing binary into a failure
	EnvAccessKey = "AWS_ACCESS_KEY_ID"     // set to the server's root user
	EnvSecretKey = "AWS_SECRET_ACCESS_KEY" // set to the server's root password
)

// ReadyTimeout bounds the wait for a started server to answer.
const ReadyTimeout = 30 * time.Second

// Server is a MinIO server on loopback, or, when the binary is missing, a
// stand-in whose Require skips (fails under CI=true).
type Server struct {
	Endpoint  string // "127.0.0.1:port"
	AccessKey string
	SecretKey string

	missing string // why there is no server
	dir     string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	stop    sync.Once

	clientOnce sync.Once
	client     *minio.Client
	clientErr  error
}

// BinaryPath returns where the harness looks for MinIO: $COFFER_MINIO_BIN,
// else ${XDG_CACHE_HOME:-$HOME/.cache}/coffer-dev/bin/minio.
func BinaryPath() string {
	if p := os.Getenv(EnvBinary); p != "" {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "coffer-dev", "bin", "minio")
}

// missingReason returns "" when the binary is there, else why not.
func missingReason(bin string) string {
	st, err := os.Stat(bin)
	switch {
	case err != nil:
		return fmt.Sprintf("MinIO binary not found at %s (%v): run `make minio` or set %s", bin, err, EnvBinary)
	case st.IsDir() || st.Mode()&0o111 == 0:
		return fmt.Sprintf("MinIO binary %s is not an executable file: run `make minio` or set %s", bin, EnvBinary)
	}
	return ""
}

func skipOrFail(tb testing.TB, reason string) {
	tb.Helper()
	if os.Getenv(EnvCI) == "true" {
		tb.Fatalf("%s (CI=true: the S3 tests must run; run `make minio` first)", reason)
		return
	}
	tb.Skip(reason)
}

// Start starts a server for one test and stops it in tb.Cleanup. It sets
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY with tb.Setenv, so the test
// must not be parallel.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := BinaryPath()
	if r := missingReason(bin); r != "" {
		skipOrFail(tb, r)
	}
	s, err := start(bin)
	if err != nil {
		tb.Fatalf("starting MinIO: %v", err)
	}
	tb.Cleanup(s.Stop)
	tb.Setenv(EnvAccessKey, s.AccessKey)
	tb.Setenv(EnvSecretKey, s.SecretKey)
	return s
}

// StartMain starts one server for a whole test binary, from TestMain:
//
//	srv, stop, err := miniotest.StartMain()
//	if err != nil { fmt.Fprintln(os.Stderr, err); os.Exit(1) }
//	code := m.Run()
//	stop()
//	os.Exit(code)
//
// It sets AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the process
// environment; stop restores them. Without the binary it returns a stand-in
// whose Require and NewBucket skip the test (fail it under CI=true).
func StartMain() (*Server, func(), error) {
	bin := BinaryPath()
	if r := missingReason(bin); r != "" {
		return &Server{missing: r}, func() {}, nil
	}
	s, err := start(bin)
	if err != nil {
		return nil, nil, fmt.Errorf("starting MinIO: %w", err)
	}
	restore := setenv(map[string]string{EnvAccessKey: s.AccessKey, EnvSecretKey: s.SecretKey})
	return s, func() { s.Stop(); restore() }, nil
}

func setenv(vars map[string]string) (restore func()) {
	type old struct {
		v  string
		ok bool
	}
	saved := map[string]old{}
	for k, v := range vars {
		ov, ok := os.LookupEnv(k)
		saved[k] = old{ov, ok}
		os.Setenv(k, v)
	}
	return func() {
		for k, o := range saved {
			if o.ok {
				os.Setenv(k, o.v)
			} else {
				os.Unsetenv(k)
			}
		}
	}
}

// Require skips or fails tb when the server is a stand-in.
func (s *Server) Require(tb testing.TB) {
	tb.Helper()
	if s == nil {
		tb.Fatal("miniotest: nil server (did TestMain call StartMain?)")
	}
	if s.missing != "" {
		skipOrFail(tb, s.missing)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freePort returns a loopback port nobody listens on at the moment.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start launches a server in a fresh temporary directory, trying again with
// other ports if the chosen ones were taken in the meantime.
func start(bin string) (*Server, error) {
	dir, err := os.MkdirTemp("", "coffer-minio-")
	if err != nil {
		return nil, err
	}
	var errs []error
	for attempt := range 3 {
		s, err := launch(bin, filepath.Join(dir, fmt.Sprint(attempt)))
		if err == nil {
			s.dir = dir
			return s, nil
		}
		errs = append(errs, err)
	}
	_ = os.RemoveAll(dir)
	return nil, errors.Join(errs...)
}

func launch(bin, dir string) (*Server, error) {
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Endpoint:  fmt.Sprintf("127.0.0.1:%d", port),
		AccessKey: "coffer" + randomHex(6),
		SecretKey: randomHex(20),
		logPath:   filepath.Join(dir, "minio.log"),
		exited:    make(chan struct{}),
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, "server",
		"--address", s.Endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", cport),
		"--certs-dir", filepath.Join(dir, "certs"),
		filepath.Join(dir, "data"))
	cmd.Env = append(cleanEnv(),
		"HOME="+dir,
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, and (best effort) killed if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.cmd = cmd
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(); err != nil {
		s.kill()
		return nil, fmt.Errorf("%w\n%s", err, s.logTail())
	}
	return s, nil
}

// cleanEnv is the environment without MinIO and AWS settings.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") && !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

// waitReady polls until the server is ready (see ready), the process
// exits, or ReadyTimeout passes.
func (s *Server) waitReady() error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(ReadyTimeout)
	for {
		ok, err := s.ready(client)
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("MinIO at %s not live after %v (last: %v)", s.Endpoint, ReadyTimeout, err)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("MinIO exited during start-up: %v", s.cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ready reports whether the server is live and its S3 API initialised: a
// live server can still answer every S3 request 503
// XMinioServerNotInitialized for a moment, which an anonymous GET of /
// shows too (an initialised server answers it 403).
func (s *Server) ready(client *http.Client) (bool, error) {
	for _, path := range []string{"/minio/health/live", "/"} {
		resp, err := client.Get("http://" + s.Endpoint + path)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		if path == "/minio/health/live" && resp.StatusCode != http.StatusOK || resp.StatusCode == http.StatusServiceUnavailable {
			return false, fmt.Errorf("GET %s: %s", path, resp.Status)
		}
	}
	return true, nil
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return "MinIO log:\n" + string(bytes.TrimSpace(b))
}

// kill stops the process group: SIGTERM, then SIGKILL after 10 s.
func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.exited
	}
}

// Stop kills the server and removes its data. It is idempotent.
func (s *Server) Stop() {
	s.stop.Do(func() {
		s.kill()
		if s.dir != "" {
			_ = os.RemoveAll(s.dir)
		}
	})
}

// Client returns a minio-go client with root credentials.
func (s *Server) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	s.Require(tb)
	s.clientOnce.Do(func() {
		s.client, s.clientErr = minio.New(s.Endpoint, &minio.Options{
			Creds:  credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
			Secure: false,
			Region: "us-east-1",
		})
	})
	if s.clientErr != nil {
		tb.Fatal(s.clientErr)
	}
	return s.client
}

// URL returns the repository URL of bucket and prefix on this server.
func (s *Server) URL(bucket, prefix string) string {
	u := "s3://" + s.Endpoint + "/" + bucket
	if prefix != "" {
		u += "/" + prefix
	}
	return u + "?tls=false"
}

// NewBucket creates a bucket with a fresh name and returns the repository
// URL of prefix "repo" in it: s3://127.0.0.1:port/<bucket>/repo?tls=false.
func (s *Server) NewBucket(tb testing.TB) string {
	tb.Helper()
	c := s.Client(tb)
	bucket := "coffer-test-" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		tb.Fatalf("creating bucket %s: %v", bucket, err)
	}
	return s.URL(bucket, "repo")
}

// NewLockedBucket creates a bucket with Object Lock (and so versioning) and
// no default retention, and returns the repository URL of prefix "repo" in
// it, as NewBucket does. Objects in it are locked only when their PUT or a
// later retention request says so.
func (s *Server) NewLockedBucket(tb testing.TB) string {
	tb.Helper()
	c := s.Client(tb)
	bucket := "coffer-lock-" + randomHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		tb.Fatalf("creating bucket %s with object lock: %v", bucket, err)
	}
	return s.URL(bucket, "repo")
}
