package vault

import (
	"container/list"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// connLimiter bounds the open connections of the agent API. A connection is
// unauthenticated until one of its requests presents a valid credential;
// unauthenticated connections may hold only MaxUnauthConns of the MaxConns
// places, so the rest stays free for agents. When a new connection finds no
// place, the oldest unauthenticated connection that is not inside a request
// (silent since it connected, or idle between requests) is closed to make
// one; when there is none, the new connection is closed at once.
type connLimiter struct {
	max, maxUnauth int
	m              *metrics

	mu     sync.Mutex
	unauth *list.List // of *trackedConn, oldest first
	auth   int
}

// trackedConn is one accepted connection. Its fields are guarded by the
// limiter's mutex.
type trackedConn struct {
	net.Conn
	l      *connLimiter
	elem   *list.Element // in l.unauth; nil once authenticated or gone
	busy   bool          // inside a request
	gone   bool          // no longer counted
	closer sync.Once
}

func newConnLimiter(max, maxUnauth int, m *metrics) *connLimiter {
	return &connLimiter{max: max, maxUnauth: maxUnauth, m: m, unauth: list.New()}
}

// limitListener applies a connLimiter to the connections it accepts.
type limitListener struct {
	net.Listener
	l *connLimiter
}

// Accept returns the next connection the limits admit; the others it
// closes at once.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc := ll.l.admit(c); tc != nil {
			return tc, nil
		}
	}
}

// admit counts c as a new unauthenticated connection, making room by
// closing the oldest evictable one if needed; it returns nil (and has closed
// c) when there is no room.
func (l *connLimiter) admit(c net.Conn) *trackedConn {
	l.mu.Lock()
	var victim *trackedConn
	if l.unauth.Len() >= l.maxUnauth || l.unauth.Len()+l.auth >= l.max {
		victim = l.evictable()
		if victim == nil {
			l.mu.Unlock()
			l.m.connsRefused.WithLabelValues("full").Inc()
			_ = c.Close()
			return nil
		}
		l.forget(victim)
	}
	tc := &trackedConn{Conn: c, l: l}
	tc.elem = l.unauth.PushBack(tc)
	l.gauges()
	l.mu.Unlock()
	if victim != nil {
		l.m.connsRefused.WithLabelValues("evicted").Inc()
		victim.closeConn()
	}
	return tc
}

// evictable returns the oldest unauthenticated connection outside a request.
func (l *connLimiter) evictable() *trackedConn {
	for e := l.unauth.Front(); e != nil; e = e.Next() {
		if tc := e.Value.(*trackedConn); !tc.busy {
			return tc
		}
	}
	return nil
}

// forget stops counting tc. The caller holds l.mu.
func (l *connLimiter) forget(tc *trackedConn) {
	if tc.gone {
		return
	}
	tc.gone = true
	if tc.elem != nil {
		l.unauth.Remove(tc.elem)
		tc.elem = nil
	} else {
		l.auth--
	}
	l.gauges()
}

func (l *connLimiter) gauges() {
	l.m.conns.WithLabelValues("unauthenticated").Set(float64(l.unauth.Len()))
	l.m.conns.WithLabelValues("authenticated").Set(float64(l.auth))
}

// promote moves tc to the authenticated connections.
func (l *connLimiter) promote(tc *trackedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tc.gone || tc.elem == nil {
		return
	}
	l.unauth.Remove(tc.elem)
	tc.elem = nil
	l.auth++
	l.gauges()
}

// counts returns the unauthenticated and authenticated connections open.
func (l *connLimiter) counts() (unauth, auth int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unauth.Len(), l.auth
}

// connState is the http.Server's ConnState hook: it tracks whether a
// connection is inside a request (not evictable) and when it is gone.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	tc := trackedOf(c)
	if tc == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch st {
	case http.StateActive:
		tc.busy = true
	case http.StateIdle:
		tc.busy = false
	case http.StateHijacked, http.StateClosed:
		l.forget(tc)
	}
}

func (tc *trackedConn) Close() error {
	tc.l.mu.Lock()
	tc.l.forget(tc)
	tc.l.mu.Unlock()
	return tc.closeConn()
}

func (tc *trackedConn) closeConn() error {
	var err error
	tc.closer.Do(func() { err = tc.Conn.Close() })
	return err
}

// trackedOf finds the trackedConn under c (which may be its TLS wrapper).
func trackedOf(c net.Conn) *trackedConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	tc, _ := c.(*trackedConn)
	return tc
}

type connKey struct{}

// connContext is the http.Server's ConnContext hook: requests find their
// connection in their context.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc := trackedOf(c); tc != nil {
		return context.WithValue(ctx, connKey{}, tc)
	}
	return ctx
}

// markAuthenticated promotes the connection of an authenticated request.
func markAuthenticated(r *http.Request) {
	if tc, ok := r.Context().Value(connKey{}).(*trackedConn); ok {
		tc.l.promote(tc)
	}
}

// Listener wraps ln with the connection limits. Serve it with the
// http.Server from HTTPServer, whose hooks tell the limits which
// connections are inside a request and which have authenticated.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, l: s.conns}
}

// HTTPServer returns the http.Server of the agent API: the header, idle
// and TLS handshake deadlines of Limits, HTTP/1.1 only (deadlines and
// slots stay per connection), TLS 1.2 or later.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.lim.HeaderTimeout,
		IdleTimeout:       s.lim.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12},
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ConnState:         s.conns.connState,
		ConnContext:       connContext,
	}
}

// armBodyDeadline gives a request body BodyTimeout to arrive. Uploads
// replace it with the rate floor once they start reading.
func (s *Server) armBodyDeadline(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(s.now().Add(s.lim.BodyTimeout)) != nil {
		return
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
}

// deadlineBody lifts the body deadline once the body has been read to its
// end, so that it does not cut the connection's next wait.
type deadlineBody struct {
	io.ReadCloser
	rc *http.ResponseController
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
