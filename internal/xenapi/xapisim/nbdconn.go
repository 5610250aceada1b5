package xapisim

import (
	"context"
	"crypto/tls"
	"net"
	"sync"

	"github.com/cofferhq/coffer/internal/nbd"
)

// discRecordMin is the fewest bytes a TLS record carrying a 28-byte NBD
// request takes (TLS 1.3: 5 header + 28 + 1 type + 16 tag = 50; TLS 1.2
// AEAD: more). A bare close_notify alert is at most 31 bytes.
const discRecordMin = 45

// maxNBDConns is xapi-nbd's cap per host.
const maxNBDConns = nbd.DefaultServerConns

// watchedConn is one raw NBD connection that remembers how many bytes the
// client sent since the server last wrote. When the connection ends, a
// request-sized remainder means the client's last act was a request that
// gets no reply: NBD_CMD_DISC. internal/nbd's Server does not tell its
// export, so the simulator looks underneath (leak-attachments).
type watchedConn struct {
	net.Conn
	mu         sync.Mutex
	afterWrite int
	done       chan struct{}
	closeOnce  sync.Once
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.afterWrite += n
	c.mu.Unlock()
	return n, err
}

func (c *watchedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.mu.Lock()
		c.afterWrite = 0
		c.mu.Unlock()
	}
	return n, err
}

func (c *watchedConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		close(c.done)
		err = c.Conn.Close()
	})
	return err
}

// sentDisc reports whether the client ended with a request (DISC).
func (c *watchedConn) sentDisc() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.afterWrite >= discRecordMin
}

// oneConnListener hands its connection to an nbd.Server once, then
// reports closed when that connection ends.
type oneConnListener struct {
	c      *watchedConn
	handed sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.handed.Do(func() { c = l.c })
	if c != nil {
		return c, nil
	}
	<-l.c.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return l.c.Close() }
func (l *oneConnListener) Addr() net.Addr { return l.c.LocalAddr() }

// Serve serves NBD on l as xapi-nbd does: at most 16 connections, TLS
// with tlsConf. Each connection gets its own internal/nbd Server, so its
// export knows the connection it serves. It returns when l is closed.
func (x *NBDExports) Serve(l net.Listener, tlsConf *tls.Config, logf func(string, ...any)) error {
	for {
		raw, err := l.Accept()
		if err != nil {
			return err
		}
		c := &watchedConn{Conn: raw, done: make(chan struct{})}
		if !x.admit(c) {
			raw.Close()
			continue
		}
		go x.serveConn(c, tlsConf, logf)
	}
}

func (x *NBDExports) admit(c *watchedConn) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.conns == nil {
		x.conns = map[*watchedConn]bool{}
	}
	if x.closed || len(x.conns) >= maxNBDConns {
		return false
	}
	x.conns[c] = true
	x.running.Add(1)
	return true
}

func (x *NBDExports) serveConn(c *watchedConn, tlsConf *tls.Config, logf func(string, ...any)) {
	srv := &nbd.Server{TLSConfig: tlsConf, Logf: logf, MaxConns: 1,
		Open: func(ctx context.Context, name string) (nbd.ServerExport, error) { return x.open(name, c) }}
	_ = srv.Serve(&oneConnListener{c: c})
	srv.Close()
	x.mu.Lock()
	delete(x.conns, c)
	x.mu.Unlock()
	x.running.Done()
}

// Close closes every connection (their exports end as abrupt closes) and
// waits until each has ended.
func (x *NBDExports) Close() {
	defer x.running.Wait()
	x.mu.Lock()
	x.closed = true
	conns := make([]*watchedConn, 0, len(x.conns))
	for c := range x.conns {
		conns = append(conns, c)
	}
	x.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
