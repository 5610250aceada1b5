package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/cofferhq/coffer/internal/testutil/testfile"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/testutil/miniotest"
)

var (
	cofferBin  string
	cofferdBin string
	xapisimBin string
	minio      *miniotest.Server
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "coffer-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cofferBin = filepath.Join(dir, "coffer")
	cofferdBin = filepath.Join(dir, "cofferd")
	xapisimBin = filepath.Join(dir, "xapisim")
	for bin, pkg := range map[string]string{cofferBin: "../cmd/coffer", cofferdBin: "../cmd/cofferd", xapisimBin: "../cmd/xapisim"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", pkg+":", err)
			os.Exit(1)
		}
	}
	srv, stop, err := miniotest.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	minio = srv
	code := m.Run()
	stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// agent runs coffer with its own config file and passphrase.
type agent struct {
	t        *testing.T
	dir      string
	config   string
	password string
	env      []string // extra environment, e.g. an enrollment token
}

func newAgent(t *testing.T) *agent {
	dir := t.TempDir()
	return &agent{t: t, dir: dir, config: filepath.Join(dir, "coffer.yaml"), password: "correct horse battery staple"}
}

type result struct {
	code   int
	stdout string
	stderr string
}

func (a *agent) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, cofferBin, append([]string{"--config", a.config}, args...)...)
	// The agent's own cache (run marks), as one machine keeps it from
	// run to run.
	cmd.Env = append(os.Environ(), "COFFER_PASSWORD="+a.password, "COFFER_INSECURE_TEST_KDF=1",
		"XDG_CACHE_HOME="+filepath.Join(a.dir, "cache"))
	cmd.Env = append(cmd.Env, a.env...)
	return cmd
}

// run runs coffer and returns its exit code and output.
func (a *agent) run(args ...string) result {
	a.t.Helper()
	return a.runEnv(nil, args...)
}

// runEnv runs coffer with extra environment variables.
func (a *agent) runEnv(env []string, args ...string) result {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := a.cmd(ctx, args...)
	cmd.Env = append(cmd.Env, env...)
	r, err := runCmd(cmd)
	if err != nil {
		a.t.Fatalf("running coffer %v: %v", args, err)
	}
	return r
}

// runCmd runs cmd and returns its exit code (-1 when a signal ended it) and
// output; the error is only for a command that could not be run.
func runCmd(cmd *exec.Cmd) (result, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code, err = ee.ExitCode(), nil
	}
	return r, err
}

// ok runs coffer and fails the test unless it exits 0.
func (a *agent) ok(args ...string) result {
	a.t.Helper()
	r := a.run(args...)
	if r.code != 0 {
		a.t.Fatalf("coffer %v exited %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// summary is the last JSON line of a --json command.
func summary(t *testing.T, r result) map[string]any {
	t.Helper()
	var last map[string]any
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err == nil {
			last = m
		}
	}
	if last == nil || last["type"] != "summary" {
		t.Fatalf("no JSON summary in output:\n%s", r.stdout)
	}
	return last
}

func num(t *testing.T, m map[string]any, k string) int64 {
	t.Helper()
	v, ok := m[k].(float64)
	if !ok {
		t.Fatalf("summary has no number %q: %v", k, m)
	}
	return int64(v)
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	if testfile.SHA256(t, a) != testfile.SHA256(t, b) {
		t.Fatalf("%s and %s differ", a, b)
	}
}
