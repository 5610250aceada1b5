package netnstest

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestNamespaceLifecycle(t *testing.T) {
	if r := Available(); r != "" {
		skipOrFail(t, r)
	}
	var name string
	var proc *Proc
	t.Run("inside", func(t *testing.T) {
		ns := New(t, netip.MustParseAddr("10.213.9.1"))
		name = ns.Name
		out, err := ns.Command(context.Background(), "ip", "-4", "addr", "show", "dev", "lo").CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr in %s: %v: %s", ns.Name, err, out)
		}
		if !strings.Contains(string(out), "10.213.9.1/32") || !strings.Contains(string(out), "127.0.0.1") {
			t.Errorf("lo of %s lacks the test address or loopback:\n%s", ns.Name, out)
		}
		// The address exists only inside the namespace.
		host, _ := exec.Command("ip", "-4", "addr", "show").CombinedOutput()
		if strings.Contains(string(host), "10.213.9.1/") {
			t.Errorf("the test address leaked into the host's namespace:\n%s", host)
		}
		proc = ns.Start("sleeper", ns.Command(context.Background(), "sleep", "300"))
		if err := proc.Signal(syscall.SIGSTOP); err != nil { // Cleanup must kill a stopped process too
			t.Fatal(err)
		}
	})
	if proc == nil {
		t.Fatal("the subtest did not start its process")
	}
	select {
	case <-proc.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("process %d still runs after its test's cleanup", proc.PID())
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), name) {
		t.Errorf("namespace %s still exists after its test's cleanup:\n%s", name, out)
	}
}

func TestNamespaceNamesAreUnique(t *testing.T) {
	a := New(t)
	b := New(t)
	if a.Name == b.Name || !strings.HasPrefix(a.Name, "coffer-") {
		t.Errorf("namespace names %q and %q", a.Name, b.Name)
	}
}
