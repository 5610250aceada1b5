package xenapi

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestLoginLogout(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	if s.Host() != "127.0.0.1" {
		t.Errorf("Host() = %q", s.Host())
	}
	got := f.paramsOf("session.login_with_password")[0]
	want := []any{testUser, testPassword, "2.21", "coffer"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("login params = %q, want %q", got, want)
		}
	}
	if err := s.Logout(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p := f.paramsOf("session.logout"); len(p) != 1 || p[0][0] != string(testSession) {
		t.Fatalf("logout params = %v", p)
	}
	if _, err := s.Call(context.Background(), "VM.get_all"); err == nil || !strings.Contains(err.Error(), "logged out") {
		t.Fatalf("Call after Logout: %v", err)
	}
}

func TestLoginOriginator(t *testing.T) {
	f := newFakeXapi(t)
	cfg := f.config()
	cfg.Originator = "coffer-test"
	if _, err := Login(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if got := f.paramsOf("session.login_with_password")[0][3]; got != "coffer-test" {
		t.Fatalf("originator = %v", got)
	}
}

func TestLoginAuthFailed(t *testing.T) {
	f := newFakeXapi(t)
	cfg := f.config()
	cfg.Password = "wrong-" + testPassword
	_, err := Login(context.Background(), cfg)
	if !IsCode(err, ErrAuthFailed) {
		t.Fatalf("err = %v, want SESSION_AUTHENTICATION_FAILED", err)
	}
	msg := err.Error()
	if strings.Contains(msg, testPassword) || !strings.Contains(msg, `"root"`) || !strings.Contains(msg, "password") {
		t.Fatalf("error %q shows the password or does not say what to check", msg)
	}
}

func TestLoginBadSessionRef(t *testing.T) {
	f := newFakeXapi(t)
	for _, res := range []any{"", "OpaqueRef:NULL", 42, "session-1"} {
		f.result("session.login_with_password", res)
		if _, err := Login(context.Background(), f.config()); err == nil || !strings.Contains(err.Error(), "not a session reference") {
			t.Errorf("login answer %v: err = %v", res, err)
		}
	}
}

// slaveOf makes f answer every login with HOST_IS_SLAVE naming addr.
func slaveOf(f *fakeXapi, addr string) {
	f.handle("session.login_with_password", func([]json.RawMessage) (any, []string) {
		return nil, []string{ErrHostIsSlave, addr}
	})
}

func TestLoginFollowsMasterWithItsPort(t *testing.T) {
	member, master := newFakeXapi(t), newFakeXapi(t)
	slaveOf(member, master.srv.Listener.Addr().String())
	s := member.login(t)
	if master.called("session.login_with_password") != 1 || member.called("session.login_with_password") != 1 {
		t.Fatalf("logins: member %d master %d", member.called("session.login_with_password"), master.called("session.login_with_password"))
	}
	if _, err := s.Call(context.Background(), "session.logout"); err != nil {
		t.Fatal(err)
	}
	if master.called("session.logout") != 1 {
		t.Fatal("the session does not talk to the master")
	}
}

// TestLoginFollowsMasterKeepsPort: xapi names the master by address only;
// the redirect keeps the port of the URL. The master listens on another
// loopback address (127.0.0.2) with the member's port.
func TestLoginFollowsMasterKeepsPort(t *testing.T) {
	member := newFakeXapi(t)
	_, port, _ := net.SplitHostPort(member.srv.Listener.Addr().String())
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", port))
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2:%s here: %v", port, err)
	}
	master := newFakeXapi(t)
	master.startOn(t, l)
	slaveOf(member, "127.0.0.2")
	cfg := member.config() // the same httptest certificate on both
	s, err := Login(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.Host() != "127.0.0.2" || master.called("session.login_with_password") != 1 {
		t.Fatalf("Host() = %q, master logins %d", s.Host(), master.called("session.login_with_password"))
	}
}

func TestLoginRedirectLoop(t *testing.T) {
	a, b := newFakeXapi(t), newFakeXapi(t)
	slaveOf(a, b.srv.Listener.Addr().String())
	slaveOf(b, a.srv.Listener.Addr().String())
	_, err := Login(context.Background(), a.config())
	if err == nil || !strings.Contains(err.Error(), "more than 2 times") {
		t.Fatalf("err = %v", err)
	}
	if n := a.called("session.login_with_password") + b.called("session.login_with_password"); n != 3 {
		t.Fatalf("%d logins, want 3", n)
	}
}

func TestLoginSlaveBadMaster(t *testing.T) {
	f := newFakeXapi(t)
	slaveOf(f, "evil.example/x?y")
	if _, err := Login(context.Background(), f.config()); err == nil || !strings.Contains(err.Error(), "not a host name") {
		t.Fatalf("err = %v", err)
	}
	f.handle("session.login_with_password", func([]json.RawMessage) (any, []string) { return nil, []string{ErrHostIsSlave} })
	if _, err := Login(context.Background(), f.config()); err == nil || !strings.Contains(err.Error(), "did not name") {
		t.Fatalf("err = %v", err)
	}
}

func TestSessionRefNeverInErrors(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	f.handle("VM.get_record", func(p []json.RawMessage) (any, []string) {
		return nil, []string{ErrHandleInvalid, "session", string(testSession)}
	})
	f.handle("VM.destroy", func(p []json.RawMessage) (any, []string) {
		return nil, []string{ErrSessionInvalid, string(testSession)}
	})
	_, err1 := s.GetVM(context.Background(), "OpaqueRef:1")
	err2 := s.DestroyVM(context.Background(), "OpaqueRef:1")
	for _, err := range []error{err1, err2} {
		if err == nil || strings.Contains(err.Error(), string(testSession)) || !strings.Contains(err.Error(), "(session)") {
			t.Errorf("err = %v", err)
		}
	}
	if !IsCode(err2, ErrSessionInvalid) {
		t.Errorf("err2 = %v", err2)
	}
}

func TestRPCHTTPFailures(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	cases := []struct {
		name   string
		serve  func(w http.ResponseWriter)
		errHas string
	}{
		{"500", func(w http.ResponseWriter) { http.Error(w, "Internal Error", 500) }, "HTTP 500"},
		{"404", func(w http.ResponseWriter) { http.Error(w, "no", 404) }, "HTTP 404"},
		{"html", func(w http.ResponseWriter) { _, _ = w.Write([]byte("<html>hi</html>")) }, "not a JSON-RPC response"},
		{"huge", func(w http.ResponseWriter) {
			_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":"` + strings.Repeat("x", 4096) + `"}`))
		}, "larger than 1024 bytes"},
	}
	old := maxRPCBody
	maxRPCBody = 1024
	defer func() { maxRPCBody = old }()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.rpcURL = newRawServer(t, c.serve) + "/jsonrpc"
			_, err := s.Call(context.Background(), "VM.get_all")
			if err == nil || !strings.Contains(err.Error(), c.errHas) || !strings.Contains(err.Error(), "VM.get_all") {
				t.Fatalf("err = %v, want %q", err, c.errHas)
			}
		})
	}
}

func TestCallCancelled(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Call(ctx, "VM.get_all")
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), string(testSession)) {
		t.Fatalf("err = %v", err)
	}
}

func TestRPCTimeout(t *testing.T) {
	f := newFakeXapi(t)
	cfg := f.config()
	cfg.HTTPTimeout = 200 * time.Millisecond
	s, err := Login(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer close(release)
	f.handle("VM.get_all", func([]json.RawMessage) (any, []string) {
		<-release
		return []string{}, nil
	})
	_, err = s.Call(context.Background(), "VM.get_all")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "VM.get_all") {
		t.Fatalf("err = %v, want a deadline naming the method", err)
	}
}

func TestPlainMasterMustBeLoopback(t *testing.T) {
	f := newFakeXapi(t)
	slaveOf(f, "10.0.0.1")
	cfg := f.config()
	cfg.URL, cfg.AllowPlainLoopback = newPlainServer(t, f), true
	if _, err := Login(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err = %v", err)
	}
}

func TestLogoutTwice(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	if err := s.Logout(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Logout(context.Background()); err == nil {
		t.Fatal("second Logout succeeded")
	}
	if f.called("session.logout") != 1 {
		t.Fatalf("session.logout sent %d times", f.called("session.logout"))
	}
}
