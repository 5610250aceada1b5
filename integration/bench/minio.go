package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// minioServer is a throwaway MinIO on 127.0.0.1 with random credentials.
type minioServer struct {
	Endpoint string // 127.0.0.1:port
	Bucket   string
	User     string
	Password string
	Version  string

	cmd    *exec.Cmd
	done   chan struct{}
	client *minio.Client
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startMinIO starts bin serving dataDir on loopback, waits until it is
// ready and creates the bucket. The caller must Stop it.
func startMinIO(ctx context.Context, bin, dataDir, logPath string) (*minioServer, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("minio not installed at %s (run make minio)", bin)
	}
	return retryPort(ctx, func() (*minioServer, error) { return tryStartMinIO(ctx, bin, dataDir, logPath) })
}

// retryPort runs start, which listens on a port from freePort, up to 3
// times: another process may take the port between freePort and the bind.
func retryPort[T any](ctx context.Context, start func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range 3 {
		if v, err = start(); err == nil || ctx.Err() != nil {
			break
		}
	}
	return v, err
}

func tryStartMinIO(ctx context.Context, bin, dataDir, logPath string) (*minioServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	console, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	s := &minioServer{
		Endpoint: fmt.Sprintf("127.0.0.1:%d", port),
		Bucket:   "bench",
		User:     "bench" + randomSecret()[:12],
		Password: randomSecret(),
		done:     make(chan struct{}),
	}
	s.cmd = exec.Command(bin, "server", "--quiet", "--address", s.Endpoint,
		"--console-address", fmt.Sprintf("127.0.0.1:%d", console), dataDir)
	s.cmd.Env = append(cleanEnv(dataDir),
		"MINIO_ROOT_USER="+s.User, "MINIO_ROOT_PASSWORD="+s.Password,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	if err := startServer(s.cmd, logPath, s.done); err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, 60*time.Second); err != nil {
		s.Stop()
		return nil, fmt.Errorf("minio did not start: %w (log %s)", err, logPath)
	}
	s.client, err = minio.New(s.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(s.User, s.Password, ""), Secure: false})
	if err == nil {
		err = s.client.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{})
	}
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("minio: creating bucket: %w", err)
	}
	s.Version = minioVersion(ctx, bin)
	return s, nil
}

func (s *minioServer) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	url := "http://" + s.Endpoint + "/minio/health/ready"
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-s.done:
			return errors.New("minio exited")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func minioVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

// Stop terminates MinIO: SIGTERM, then SIGKILL after 10 seconds.
func (s *minioServer) Stop() {
	if s != nil {
		stopServer(s.cmd, s.done, 10*time.Second)
	}
}

// usage returns the bytes and number of objects under prefix.
func (s *minioServer) usage(ctx context.Context, prefix string) (size, n int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for obj := range s.client.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return 0, 0, obj.Err
		}
		size += obj.Size
		n++
	}
	return size, n, nil
}

// cpuSeconds returns the CPU time MinIO has used so far, from /proc.
func (s *minioServer) cpuSeconds() float64 { return processCPUSeconds(s.cmd.Process.Pid) }

// processCPUSeconds returns the CPU time a running process has used so far,
// from /proc; 0 when it cannot be read.
func processCPUSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the ")" that ends the command name; utime and stime are
	// fields 14 and 15 of the whole line, in clock ticks (100 per second).
	i := strings.LastIndexByte(string(data), ')')
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// startServer starts a server process the bench owns (MinIO, cofferd) with
// its output in logPath, in its own process group and killed if the bench
// dies; done is closed when it exits.
func startServer(cmd *exec.Cmd, logPath string, done chan struct{}) error {
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	return nil
}

// stopServer ends a process startServer started: SIGTERM to its group, then
// SIGKILL if it has not exited after grace.
func stopServer(cmd *exec.Cmd, done chan struct{}, grace time.Duration) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}
