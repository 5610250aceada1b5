package netnstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// EnvCI is the variable that turns a skip into a failure when "true".
const EnvCI = "CI"

var seq atomic.Int64

// NS is a network namespace made for one test. Its processes and the
// namespace itself go away in t.Cleanup.
type NS struct {
	Name string

	t     testing.TB
	dir   string
	mu    sync.Mutex
	procs []*Proc
}

// skipOrFail skips the test, or fails it when CI=true.
func skipOrFail(tb testing.TB, reason string) {
	tb.Helper()
	if os.Getenv(EnvCI) == "true" {
		tb.Fatalf("%s (CI=true: this test must run; it needs root and iproute2)", reason)
	}
	tb.Skip(reason)
}

// Available returns "" when namespaces can be made here, else why not.
func Available() string {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("netnstest: needs root to make a network namespace (running as uid %d)", os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "netnstest: the `ip` command (iproute2) is not installed"
	}
	return ""
}

// New makes a namespace named coffer-<pid>-<n>, brings its lo up and adds
// each address (as a /32) to lo. It skips the test (fails it under
// CI=true) when namespaces cannot be made here.
func New(tb testing.TB, addrs ...netip.Addr) *NS {
	tb.Helper()
	if r := Available(); r != "" {
		skipOrFail(tb, r)
	}
	n := &NS{Name: fmt.Sprintf("coffer-%d-%d", os.Getpid(), seq.Add(1)), t: tb, dir: tb.TempDir()}
	reapStale()
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		skipOrFail(tb, fmt.Sprintf("netnstest: cannot make network namespace %s: %v: %s", n.Name, err, bytes.TrimSpace(out)))
	}
	tb.Cleanup(n.close)
	n.ip(tb, "link", "set", "lo", "up")
	for _, a := range addrs {
		if !a.Is4() {
			tb.Fatalf("netnstest: %s is not an IPv4 address", a)
		}
		n.ip(tb, "addr", "add", a.String()+"/32", "dev", "lo")
	}
	return n
}

func (n *NS) ip(tb testing.TB, args ...string) {
	tb.Helper()
	full := append([]string{"netns", "exec", n.Name, "ip"}, args...)
	if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
		tb.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, bytes.TrimSpace(out))
	}
}

// Command returns a command that runs name with args inside the namespace
// (`ip netns exec`, which execs the program: the process's PID is the
// program's own).
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Proc is a long-running process started inside the namespace.
type Proc struct {
	Name    string // for messages
	Cmd     *exec.Cmd
	LogPath string // stdout and stderr

	done    chan struct{}
	waitErr error
	killed  atomic.Bool
}

// Start starts cmd (made by Command) and records it, so that it is killed
// in t.Cleanup. Its output goes to a log file that is printed, tail only,
// when the test fails.
func (n *NS) Start(name string, cmd *exec.Cmd) *Proc {
	n.t.Helper()
	logPath := filepath.Join(n.dir, strings.ReplaceAll(name, "/", "_")+".log")
	f, err := os.Create(logPath)
	if err != nil {
		n.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		n.t.Fatalf("starting %s: %v", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, LogPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	n.mu.Lock()
	n.procs = append(n.procs, p)
	n.mu.Unlock()
	return p
}

// PID is the process's ID.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL to the process (not its children: it has none that
// matter here) and waits for it to end.
func (p *Proc) Kill() error {
	p.killed.Store(true)
	_ = p.Cmd.Process.Signal(syscall.SIGCONT)
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.done
	return nil
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits up to grace for the process to end, then
// kills it.
func (p *Proc) Stop(grace time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGCONT)
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(grace):
		return p.Kill()
	}
}

// Log returns the last max bytes of the process's output.
func (p *Proc) Log(max int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > max {
		b = append([]byte("…"), b[len(b)-max:]...)
	}
	return string(b)
}

// close kills every recorded process that is still running, prints the
// tails of their logs when the test failed, and deletes the namespace.
func (n *NS) close() {
	n.mu.Lock()
	procs := n.procs
	n.procs = nil
	n.mu.Unlock()
	for _, p := range procs {
		if !p.Exited() {
			_ = p.Kill()
		}
		if n.t.Failed() {
			n.t.Logf("--- %s (pid %d) log tail:\n%s", p.Name, p.PID(), p.Log(3000))
		}
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		n.t.Errorf("deleting network namespace %s: %v: %s", n.Name, err, bytes.TrimSpace(out))
	}
}

// reapStale deletes namespaces this package made in test processes that
// are gone (a run killed before its cleanup), after killing the processes
// still inside them.
func reapStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		var pid, k int
		if _, err := fmt.Sscanf(name, "coffer-%d-%d", &pid, &k); err != nil || fmt.Sprintf("coffer-%d-%d", pid, k) != name {
			continue
		}
		if pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its test is still running
		}
		if pids, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
			for _, f := range strings.Fields(string(pids)) {
				var p int
				if _, err := fmt.Sscan(f, &p); err == nil && p > 1 {
					_ = syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
		_ = exec.Command("ip", "netns", "del", name).Run()
	}
}

// BuildTool builds nstool into a temporary folder and returns its path.
func BuildTool(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "nstool")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/cofferhq/coffer/internal/testutil/netnstest/nstool").CombinedOutput()
	if err != nil {
		tb.Fatalf("building nstool: %v\n%s", err, out)
	}
	return bin
}
