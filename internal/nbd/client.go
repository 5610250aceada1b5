package nbd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
)

// Export says where one VDI is served, as VDI.get_nbd_info reports it.
type Export struct {
	Address string // host address
	Port    int    // 10809 on xapi
	CertPEM string // the server's certificate; empty on an insecure_nbd network
	Subject string // the name the certificate is issued for
	Name    string // "/<vdi-uuid>?session_id=<session>": a secret, never logged whole
}

// String shows e with its session redacted, so logging an Export is safe.
func (e Export) String() string {
	return fmt.Sprintf("nbd export %q at %s", RedactName(e.Name), net.JoinHostPort(e.Address, strconv.Itoa(e.Port)))
}

// GoString is String, so %#v does not show the session either.
func (e Export) GoString() string { return e.String() }

// Dialer returns a function that dials e with opt, as NewReader wants.
func (e Export) Dialer(opt DialOptions) func(ctx context.Context) (*Conn, error) {
	return func(ctx context.Context) (*Conn, error) { return Dial(ctx, e, opt) }
}

// DialOptions tune Dial.
type DialOptions struct {
	// AllowPlain connects without TLS when CertPEM is empty (xapi's
	// insecure_nbd); otherwise an export without a certificate is refused.
	AllowPlain bool
	// Timeout bounds the handshake and each request's I/O; 60 s when 0.
	Timeout time.Duration
	// Dial opens the TCP connection; a net.Dialer when nil.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// DefaultTimeout is DialOptions.Timeout when it is 0.
const DefaultTimeout = 60 * time.Second

// Conn is one negotiated NBD connection to one export. It is safe for
// concurrent use; requests on one Conn run one at a time.
type Conn struct {
	mu      sync.Mutex
	conn    net.Conn
	size    int64
	timeout time.Duration
	handle  uint64
	broken  error // set once the stream is unusable
	closed  bool
	name    string // redacted
}

// Dial connects to e and negotiates it with NBD_OPT_EXPORT_NAME, after
// NBD_OPT_STARTTLS unless the export is plain. TLS trusts CertPEM only and
// checks it is issued for Subject.
func Dial(ctx context.Context, e Export, opt DialOptions) (*Conn, error) {
	if err := validateExport(e); err != nil {
		return nil, err
	}
	tlsConf, err := clientTLS(e, opt)
	if err != nil {
		return nil, err
	}
	timeout := opt.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dial := opt.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: timeout}).DialContext
	}
	addr := net.JoinHostPort(e.Address, strconv.Itoa(e.Port))
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("nbd: connecting to %s: %w", addr, err)
	}
	c, err := handshake(ctx, raw, e.Name, tlsConf, timeout)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("nbd: %s: %w", addr, err)
	}
	return c, nil
}

// clientTLS builds the TLS configuration for e, or nil for a plain one.
func clientTLS(e Export, opt DialOptions) (*tls.Config, error) {
	if e.CertPEM == "" {
		if !opt.AllowPlain {
			return nil, fmt.Errorf("nbd: export %q at %s has no TLS certificate (an insecure_nbd network): "+
				"refusing to read it in clear; allow plain NBD or set the network's purpose to nbd", RedactName(e.Name), e.Address)
		}
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(e.CertPEM)) {
		return nil, fmt.Errorf("nbd: the certificate xapi reported for %s holds no PEM certificate (check VDI.get_nbd_info)", e.Address)
	}
	if e.Subject == "" {
		return nil, fmt.Errorf("nbd: xapi reported no certificate subject for %s (check VDI.get_nbd_info)", e.Address)
	}
	return &tls.Config{RootCAs: pool, ServerName: e.Subject, MinVersion: tls.VersionTLS12}, nil
}

// handshake negotiates name on raw; tlsConf nil means plain. When ctx ends
// first, the error is ctx's.
func handshake(ctx context.Context, raw net.Conn, name string, tlsConf *tls.Config, timeout time.Duration) (*Conn, error) {
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := raw.SetDeadline(clock.Real.Now().Add(timeout)); err != nil {
		return nil, err
	}
	conn, size, err := negotiate(ctx, raw, name, tlsConf)
	if err == nil && !stop() {
		err = ctx.Err() // the deadline was moved into the past
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("negotiating export %q: %w", RedactName(name), ctx.Err())
		}
		return nil, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return &Conn{conn: conn, size: size, timeout: timeout, name: RedactName(name)}, nil
}

// negotiate runs the greeting, STARTTLS when tlsConf is set, and
// EXPORT_NAME; conn is the TLS connection after STARTTLS.
func negotiate(ctx context.Context, raw net.Conn, name string, tlsConf *tls.Config) (conn net.Conn, size int64, err error) {
	conn = raw
	if err := readGreeting(conn); err != nil {
		return nil, 0, err
	}
	if tlsConf != nil {
		if conn, err = startTLS(ctx, conn, tlsConf); err != nil {
			return nil, 0, err
		}
	}
	if size, err = exportName(conn, name); err != nil {
		return nil, 0, err
	}
	return conn, size, nil
}

// readGreeting reads the server's greeting and answers with the client
// flags (fixed newstyle, never NO_ZEROES).
func readGreeting(conn net.Conn) error {
	var b [18]byte
	if _, err := io.ReadFull(conn, b[:8]); err != nil {
		return fmt.Errorf("reading the NBD greeting: %w", unexpected(err))
	}
	if m := binary.BigEndian.Uint64(b[:]); m != magicNBD {
		return fmt.Errorf("%w: the server did not greet with NBDMAGIC (%#x): is this an NBD server?", ErrProtocol, m)
	}
	if _, err := io.ReadFull(conn, b[8:]); err != nil {
		return fmt.Errorf("reading the NBD greeting: %w", unexpected(err))
	}
	switch m := binary.BigEndian.Uint64(b[8:]); m {
	case magicOpt:
	case magicOldstyle:
		return fmt.Errorf("%w: the server speaks the oldstyle protocol; only fixed newstyle (xapi's) is supported", ErrProtocol)
	default:
		return fmt.Errorf("%w: greeting magic %#x", ErrProtocol, m)
	}
	if f := binary.BigEndian.Uint16(b[16:]); f&flagFixedNewstyle == 0 {
		return fmt.Errorf("%w: the server is not fixed-newstyle (flags %#x)", ErrProtocol, f)
	}
	var cf [4]byte
	binary.BigEndian.PutUint32(cf[:], clientFixedNewstyle)
	if _, err := conn.Write(cf[:]); err != nil {
		return fmt.Errorf("sending the client flags: %w", err)
	}
	return nil
}

func writeOption(conn net.Conn, opt uint32, data []byte) error {
	b := make([]byte, optHeaderLen, optHeaderLen+len(data))
	binary.BigEndian.PutUint64(b[0:], magicOpt)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], uint32(len(data)))
	if _, err := conn.Write(append(b, data...)); err != nil {
		return fmt.Errorf("sending option %d: %w", opt, err)
	}
	return nil
}

// startTLS asks for TLS and runs the TLS handshake.
func startTLS(ctx context.Context, conn net.Conn, conf *tls.Config) (net.Conn, error) {
	if err := writeOption(conn, optStartTLS, nil); err != nil {
		return nil, err
	}
	var b [optReplyLen]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return nil, fmt.Errorf("reading the answer to STARTTLS: %w", unexpected(err))
	}
	r, err := parseOptReply(b[:])
	if err != nil {
		return nil, err
	}
	if _, err := io.CopyN(io.Discard, conn, int64(r.length)); err != nil {
		return nil, fmt.Errorf("reading the answer to STARTTLS: %w", unexpected(err))
	}
	if r.option != optStartTLS {
		return nil, fmt.Errorf("%w: answer to option %d when STARTTLS was asked", ErrProtocol, r.option)
	}
	if r.typ != repAck {
		return nil, fmt.Errorf("the server refused TLS: %s; is the network's purpose insecure_nbd?", optReplyName(r.typ))
	}
	tc := tls.Client(conn, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake (the server must present the certificate VDI.get_nbd_info reported, for %q): %w",
			conf.ServerName, err)
	}
	return tc, nil
}

// exportName asks for name and reads its size and flags.
func exportName(conn net.Conn, name string) (int64, error) {
	if len(name) > maxNameLen {
		return 0, fmt.Errorf("export name of %d bytes is longer than NBD allows (%d)", len(name), maxNameLen)
	}
	if err := writeOption(conn, optExportName, []byte(name)); err != nil {
		return 0, err
	}
	var b [exportInfoLen]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("the server closed the connection instead of opening export %q "+
				"(unknown VDI, expired session, VDI in use or the host's NBD connections all taken)", RedactName(name))
		}
		return 0, fmt.Errorf("reading the size of export %q: %w", RedactName(name), unexpected(err))
	}
	return parseExportInfo(b[:], name)
}

func parseExportInfo(b []byte, name string) (int64, error) {
	size := binary.BigEndian.Uint64(b)
	flags := binary.BigEndian.Uint16(b[8:])
	if size > math.MaxInt64 {
		return 0, fmt.Errorf("%w: export %q has size %d, beyond 2^63", ErrProtocol, RedactName(name), size)
	}
	if flags&transHasFlags == 0 {
		return 0, fmt.Errorf("%w: export %q came without NBD_FLAG_HAS_FLAGS (flags %#x)", ErrProtocol, RedactName(name), flags)
	}
	for _, z := range b[10:] {
		if z != 0 {
			return 0, fmt.Errorf("%w: export %q: the 124 bytes after the flags are not zero", ErrProtocol, RedactName(name))
		}
	}
	return int64(size), nil
}

// unexpected turns a clean EOF in the middle of a message into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Size is the export's size in bytes.
func (c *Conn) Size() int64 { return c.size }

// ReadAt reads len(p) bytes at off in requests of at most MaxRequest.
// off and len(p) must be multiples of SectorSize; a read reaching past the
// end returns the bytes before it and io.EOF. An *ErrorReply leaves the
// connection usable; any other error breaks it.
func (c *Conn) ReadAt(p []byte, off int64) (int, error) {
	if off%SectorSize != 0 || len(p)%SectorSize != 0 {
		return 0, fmt.Errorf("nbd: read of %d bytes at offset %d is not aligned to %d-byte sectors, as xapi requires", len(p), off, SectorSize)
	}
	if off < 0 {
		return 0, fmt.Errorf("nbd: read at negative offset %d", off)
	}
	if off >= c.size {
		return 0, io.EOF
	}
	want := p
	if rest := c.size - off; int64(len(p)) > rest {
		want = p[:rest]
		if len(want)%SectorSize != 0 {
			return 0, fmt.Errorf("nbd: export %q is %d bytes, not a whole number of sectors: its tail cannot be read", c.name, c.size)
		}
	}
	n := 0
	for n < len(want) {
		k := min(len(want)-n, MaxRequest)
		if err := c.readChunk(want[n:n+k], off+int64(n)); err != nil {
			return n, err
		}
		n += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readChunk runs one READ request.
func (c *Conn) readChunk(p []byte, off int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("nbd: export %q: read on a closed connection", c.name)
	}
	if c.broken != nil {
		return c.broken
	}
	err := c.exchange(p, off)
	var er *ErrorReply
	if err != nil && !errors.As(err, &er) {
		c.broken = err
	}
	return err
}

func (c *Conn) exchange(p []byte, off int64) error {
	if err := c.conn.SetDeadline(clock.Real.Now().Add(c.timeout)); err != nil {
		return fmt.Errorf("nbd: export %q: %w", c.name, err)
	}
	c.handle++
	var b [requestLen]byte
	request{typ: cmdRead, handle: c.handle, offset: uint64(off), length: uint32(len(p))}.marshal(b[:])
	if _, err := c.conn.Write(b[:]); err != nil {
		return fmt.Errorf("nbd: export %q: sending a read at offset %d: %w", c.name, off, err)
	}
	var h [replyLen]byte
	if _, err := io.ReadFull(c.conn, h[:]); err != nil {
		return fmt.Errorf("nbd: export %q: reading the reply to a read at offset %d: %w", c.name, off, unexpected(err))
	}
	r, err := parseReply(h[:])
	if err != nil {
		return fmt.Errorf("nbd: export %q: %w", c.name, err)
	}
	if r.handle != c.handle {
		return fmt.Errorf("nbd: export %q: %w: reply for request %d while %d was sent", c.name, ErrProtocol, r.handle, c.handle)
	}
	if r.errno != 0 {
		return &ErrorReply{Errno: r.errno, Offset: off, Length: uint32(len(p))}
	}
	if _, err := io.ReadFull(c.conn, p); err != nil {
		return fmt.Errorf("nbd: export %q: reading %d bytes at offset %d: %w", c.name, len(p), off, unexpected(err))
	}
	return nil
}

// Close sends NBD_CMD_DISC (unless the connection is broken) and closes.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.broken == nil {
		c.conn.SetDeadline(clock.Real.Now().Add(min(c.timeout, 5*time.Second)))
		var b [requestLen]byte
		c.handle++
		request{typ: cmdDisc, handle: c.handle}.marshal(b[:])
		c.conn.Write(b[:])
	}
	if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("nbd: export %q: closing: %w", c.name, err)
	}
	return nil
}
