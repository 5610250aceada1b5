package vault

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// serveLimited runs f's server as cofferd serve does: its HTTPServer over
// its Listener on loopback.
func serveLimited(t *testing.T, f *fixture) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := f.srv.HTTPServer()
	go func() { _ = hs.Serve(f.srv.Listener(ln)) }()
	t.Cleanup(func() { _ = hs.Close() })
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reports whether the server closes c within d (c sends
// nothing more); it returns how long that took.
func closedWithin(c net.Conn, d time.Duration) (bool, time.Duration) {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	_, err := io.Copy(io.Discard, c)
	took := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false, took
	}
	return true, took
}

// getConfig sends an authenticated GET /v1/repo/config on c (kept alive)
// and returns the status.
func getConfig(t *testing.T, c net.Conn, br *bufio.Reader, cred vaultapi.Secret) int {
	t.Helper()
	fmt.Fprintf(c, "GET /v1/repo/config HTTP/1.1\r\nHost: vault\r\nAuthorization: Bearer %s\r\n\r\n", cred.Reveal())
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET config: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestSilentBodyTimesOut: a client that sends the headers of POST
// /v1/enroll or /v1/escrow/slot and then nothing gets 408 too_slow after
// the body deadline, its connection is closed, and nothing is stored.
func TestSilentBodyTimesOut(t *testing.T) {
	lim := DefaultLimits()
	lim.BodyTimeout = 300 * time.Millisecond
	f := newFixture(t, lim)
	addr := serveLimited(t, f)
	before := snapshotStore(f.data, f.ledger)
	for _, head := range []string{
		"POST /v1/enroll HTTP/1.1\r\nHost: vault\r\nContent-Length: 100\r\n\r\n{\"tok",
		"POST /v1/escrow/slot HTTP/1.1\r\nHost: vault\r\nAuthorization: Bearer " + f.credA.Reveal() + "\r\nContent-Length: 50\r\n\r\n",
	} {
		c := dial(t, addr)
		start := time.Now()
		fmt.Fprint(c, head)
		_ = c.SetReadDeadline(start.Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: no answer: %v", head[:20], err)
		}
		var eb vaultapi.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || eb.Error.Code != vaultapi.CodeTooSlow || !strings.Contains(eb.Error.Message, "did not arrive") {
			t.Fatalf("%q: %d %+v", head[:20], resp.StatusCode, eb.Error)
		}
		if took := time.Since(start); took < 250*time.Millisecond || took > 3*time.Second {
			t.Errorf("answered after %s, want about the 300ms body deadline", took)
		}
		if closed, _ := closedWithin(c, 2*time.Second); !closed {
			t.Error("connection left open after the body deadline")
		}
	}
	if after := snapshotStore(f.data, f.ledger); after != before {
		t.Fatalf("store changed:\n%s\n%s", before, after)
	}
}

// TestConnLimitKeepsRoomForAgents: silent connections beyond the
// unauthenticated share evict the oldest silent ones, never an
// authenticated agent's connection, and an agent still gets in.
func TestConnLimitKeepsRoomForAgents(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxConns, lim.MaxUnauthConns = 20, 10
	f := newFixture(t, lim)
	addr := serveLimited(t, f)
	agent := dial(t, addr)
	abr := bufio.NewReader(agent)
	if st := getConfig(t, agent, abr, f.credA); st != 200 {
		t.Fatalf("agent before the flood: %d", st)
	}
	var silent []net.Conn
	for i := 0; i < 40; i++ {
		silent = append(silent, dial(t, addr))
	}
	waitCounts(t, f.srv, 10, 1)
	if closed, took := closedWithin(silent[0], 2*time.Second); !closed {
		t.Fatal("the oldest silent connection was not evicted")
	} else if took > time.Second {
		t.Errorf("eviction took %s", took)
	}
	// The agent's kept-alive connection survived, and a new one gets in.
	if st := getConfig(t, agent, abr, f.credA); st != 200 {
		t.Fatalf("agent's kept-alive connection after the flood: %d", st)
	}
	c2 := dial(t, addr)
	if st := getConfig(t, c2, bufio.NewReader(c2), f.credB); st != 200 {
		t.Fatalf("new agent connection during the flood: %d", st)
	}
	waitCounts(t, f.srv, 9, 2) // c2 took a silent one's place, then authenticated
}

// TestConnLimitClosesAtOnce: when every unauthenticated place is held by a
// request in progress, a new connection is closed at once, not queued.
func TestConnLimitClosesAtOnce(t *testing.T) {
	lim := DefaultLimits()
	lim.MaxConns, lim.MaxUnauthConns, lim.BodyTimeout = 4, 2, 10*time.Second
	f := newFixture(t, lim)
	addr := serveLimited(t, f)
	for i := 0; i < 2; i++ {
		c := dial(t, addr)
		fmt.Fprint(c, "POST /v1/enroll HTTP/1.1\r\nHost: vault\r\nContent-Length: 100\r\n\r\n{")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.srv.conns.mu.Lock()
		busy := 0
		for e := f.srv.conns.unauth.Front(); e != nil; e = e.Next() {
			if e.Value.(*trackedConn).busy {
				busy++
			}
		}
		f.srv.conns.mu.Unlock()
		if busy == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests in progress, want 2", busy)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := dial(t, addr)
	if closed, took := closedWithin(c, 3*time.Second); !closed || took > time.Second {
		t.Fatalf("connection over the limit: closed %v after %s, want closed at once", closed, took)
	}
	if n := metricValue(t, f.srv, "cofferd_connections_closed_total", `reason="full"`); n != 1 {
		t.Errorf("cofferd_connections_closed_total{reason=full} = %v, want 1", n)
	}
}

func waitCounts(t *testing.T, s *Server, unauth, auth int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		u, a := s.conns.counts()
		if u == unauth && a == auth {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connections: %d unauthenticated, %d authenticated; want %d and %d", u, a, unauth, auth)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// metricValue reads one series from the server's registry.
func metricValue(t *testing.T, s *Server, name, label string) float64 {
	t.Helper()
	mfs, err := s.gather.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			if strings.Join(labels, ",") != label {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// TestUploadOutlivesBodyDeadline: an upload that keeps sending is not cut
// by the body deadline, with the rate floor on or off.
func TestUploadOutlivesBodyDeadline(t *testing.T) {
	for _, floor := range []int64{0, 10} {
		lim := DefaultLimits()
		lim.BodyTimeout, lim.MinUploadRate, lim.RateWindow = 200*time.Millisecond, floor, 300*time.Millisecond
		f := newFixture(t, lim)
		addr := serveLimited(t, f)
		body := randBytes(16)
		c, br := rawPut(t, addr, f.credA, packName(body), len(body), body, 50*time.Millisecond)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		c.Close()
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("floor %d: paced upload of 800ms: %v %v", floor, err, resp)
		}
	}
}

// TestConnLimitOverTLS: the limits see through TLS: a TLS connection that
// authenticates is promoted, and it is released when it closes.
func TestConnLimitOverTLS(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	ts.Listener.Close()
	ts.Listener, ts.Config = f.srv.Listener(ln), f.srv.HTTPServer()
	ts.StartTLS()
	defer ts.Close()
	c := ts.Client()
	r, _ := http.NewRequest("GET", ts.URL+"/v1/repo/config", nil)
	r.Header.Set("Authorization", "Bearer "+f.credA.Reveal())
	resp, err := c.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET over TLS: %d", resp.StatusCode)
	}
	waitCounts(t, f.srv, 0, 1)
	c.CloseIdleConnections()
	waitCounts(t, f.srv, 0, 0)
}
