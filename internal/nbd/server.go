package nbd

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
)

// ServerExport is one export a Server serves: read-only bytes of a fixed
// size. The server closes it when the connection ends.
type ServerExport interface {
	io.ReaderAt
	Size() int64
	Close() error
}

// DefaultServerConns is xapi-nbd's connection cap per host.
const DefaultServerConns = 16

// serverHandshakeTimeout bounds the option haggling of one connection.
const serverHandshakeTimeout = 60 * time.Second

// Server is an NBD server. Unconfigured it behaves as xapi's: fixed
// newstyle only, NBD_OPT_EXPORT_NAME (no OPT_GO), NBD_OPT_STARTTLS and
// NBD_OPT_ABORT; read-only exports; READ and DISC only, with offsets and
// lengths multiples of 512, one request at a time. Full turns on the rest of
// the protocol for instant access (see Full). Set its fields before Serve and
// do not change them after.
type Server struct {
	// Open opens the export a client names. An error closes the
	// connection, as xapi-nbd does.
	Open func(ctx context.Context, name string) (ServerExport, error)
	// TLSConfig nil serves plain (xapi's insecure_nbd); otherwise STARTTLS
	// is required and options before it get NBD_REP_ERR_TLS_REQD.
	TLSConfig *tls.Config
	// MaxConns caps open connections (DefaultServerConns when 0); more are
	// closed at once.
	MaxConns int
	// Logf, when set, receives one line per refused connection or failure.
	Logf func(format string, args ...any)

	// Full turns on the full read-only protocol on top of the xapi-like
	// one: NBD_OPT_LIST, INFO and GO (with export and block-size info),
	// NBD_FLAG_C_NO_ZEROES, structured replies (holes as OFFSET_HOLE chunks
	// when the export is an ExtentsExport, errors as error chunks), the
	// "base:allocation" meta context and BLOCK_STATUS, FLUSH and CACHE,
	// byte-granular reads of up to 32 MiB, WRITE, TRIM and WRITE_ZEROES
	// refused with EPERM, and up to MaxInFlight requests of one connection
	// served at once.
	Full bool
	// List names the exports NBD_OPT_LIST offers in full mode; when nil,
	// LIST is refused by policy as in the xapi-like mode.
	List func(ctx context.Context) ([]string, error)
	// MaxInFlight caps the requests of one connection served at once in
	// full mode (DefaultInFlight when 0).
	MaxInFlight int

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{}
	closed   bool
	ctx      context.Context
	cancel   context.CancelFunc
	handlers sync.WaitGroup
}

func (s *Server) logf(format string, args ...any) {
	if s.Logf != nil {
		s.Logf(format, args...)
	}
}

func (s *Server) maxConns() int {
	if s.MaxConns > 0 {
		return s.MaxConns
	}
	return DefaultServerConns
}

// Serve accepts connections on l until Close, and returns nil then.
func (s *Server) Serve(l net.Listener) error {
	if s.Open == nil {
		return errors.New("nbd: Server.Open is not set")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return nil
	}
	if s.ln != nil {
		s.mu.Unlock()
		return errors.New("nbd: Server.Serve called twice")
	}
	s.ln = l
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("nbd: accepting connections: %w", err)
		}
		s.admit(c)
	}
}

// admit starts a handler for c, or closes c when the server is full.
func (s *Server) admit(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	if len(s.conns) >= s.maxConns() {
		c.Close()
		s.logf("nbd: refused a connection from %s: %d connections open, the most allowed", c.RemoteAddr(), len(s.conns))
		return
	}
	s.conns[c] = struct{}{}
	s.handlers.Add(1)
	go func() {
		defer s.handlers.Done()
		s.handle(c)
	}()
}

// ActiveConns is the number of open connections.
func (s *Server) ActiveConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close stops Serve, closes every connection and waits for their handlers.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	var err error
	if s.ln != nil {
		err = s.ln.Close()
		s.cancel()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.handlers.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) forget(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// handle runs one connection from the greeting to its end.
func (s *Server) handle(raw net.Conn) {
	defer s.forget(raw)
	defer raw.Close()
	raw.SetDeadline(clock.Real.Now().Add(serverHandshakeTimeout))
	sc := &serverConn{s: s, conn: raw}
	exp, err := sc.negotiate()
	if err != nil {
		if !errors.Is(err, errClientAbort) {
			s.logf("nbd: connection from %s: %v", raw.RemoteAddr(), err)
		}
		return
	}
	defer exp.Close()
	sc.conn.SetDeadline(time.Time{})
	transmit := sc.transmit
	if s.Full {
		transmit = sc.transmitFull
	}
	if err := transmit(exp); err != nil {
		s.logf("nbd: connection from %s: %v", raw.RemoteAddr(), err)
	}
}

var errClientAbort = errors.New("nbd: the client ended the negotiation")

// serverConn is the server's side of one connection. conn becomes the TLS
// connection after STARTTLS.
type serverConn struct {
	s    *Server
	conn net.Conn
	tls  bool

	// What a full-mode client negotiated.
	noZeroes   bool
	structured bool
	meta       metaSelection
}

func (sc *serverConn) greet() error {
	var b [18]byte
	binary.BigEndian.PutUint64(b[0:], magicNBD)
	binary.BigEndian.PutUint64(b[8:], magicOpt)
	flags := flagFixedNewstyle
	if sc.s.Full {
		flags |= flagNoZeroes
	}
	binary.BigEndian.PutUint16(b[16:], flags)
	if _, err := sc.conn.Write(b[:]); err != nil {
		return fmt.Errorf("sending the greeting: %w", err)
	}
	var cf [4]byte
	if _, err := io.ReadFull(sc.conn, cf[:]); err != nil {
		return fmt.Errorf("reading the client flags: %w", err)
	}
	cflags := binary.BigEndian.Uint32(cf[:])
	if sc.s.TLSConfig != nil && cflags&clientFixedNewstyle == 0 {
		return errors.New("the client is not fixed-newstyle and TLS is required")
	}
	sc.noZeroes = sc.s.Full && cflags&clientNoZeroes != 0
	return nil
}

// negotiate runs the handshake up to NBD_OPT_EXPORT_NAME (or NBD_OPT_GO in
// full mode) and returns the export chosen.
func (sc *serverConn) negotiate() (ServerExport, error) {
	if err := sc.greet(); err != nil {
		return nil, err
	}
	for {
		opt, data, err := sc.readOption()
		if err != nil {
			return nil, err
		}
		exp, err := sc.option(opt, data)
		if err != nil || exp != nil {
			return exp, err
		}
	}
}

func (sc *serverConn) readOption() (uint32, []byte, error) {
	var h [optHeaderLen]byte
	if _, err := io.ReadFull(sc.conn, h[:]); err != nil {
		return 0, nil, fmt.Errorf("reading an option: %w", err)
	}
	if m := binary.BigEndian.Uint64(h[:]); m != magicOpt {
		return 0, nil, fmt.Errorf("%w: option magic %#x", ErrProtocol, m)
	}
	opt := binary.BigEndian.Uint32(h[8:])
	n := binary.BigEndian.Uint32(h[12:])
	if n > maxOptionLen {
		return 0, nil, fmt.Errorf("%w: option %d with %d bytes of data (at most %d)", ErrProtocol, opt, n, maxOptionLen)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(sc.conn, data); err != nil {
		return 0, nil, fmt.Errorf("reading option %d: %w", opt, err)
	}
	return opt, data, nil
}

// option answers one option; a non-nil export ends the negotiation.
func (sc *serverConn) option(opt uint32, data []byte) (ServerExport, error) {
	needTLS := sc.s.TLSConfig != nil && !sc.tls
	switch {
	case opt == optAbort && sc.s.Full:
		sc.replyOption(opt, repAck)
		return nil, errClientAbort
	case opt == optAbort:
		return nil, errClientAbort
	case opt == optExportName && needTLS:
		return nil, errors.New("the client asked for an export before STARTTLS and TLS is required")
	case opt == optExportName:
		return sc.export(string(data))
	case opt == optStartTLS && needTLS:
		return nil, sc.startTLS()
	case opt == optStartTLS && sc.tls:
		return nil, sc.replyOption(opt, repErrInvalid)
	case opt == optStartTLS:
		return nil, sc.replyOption(opt, repErrPolicy)
	case needTLS:
		return nil, sc.replyOption(opt, repErrTLSReqd)
	case sc.s.Full:
		return sc.fullOption(opt, data)
	case opt == optList:
		return nil, sc.replyOption(opt, repErrPolicy)
	}
	return nil, sc.replyOption(opt, repErrUnsup)
}

func (sc *serverConn) replyOption(opt, typ uint32) error {
	var b [optReplyLen]byte
	binary.BigEndian.PutUint64(b[0:], magicOptReply)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], typ)
	if _, err := sc.conn.Write(b[:]); err != nil {
		return fmt.Errorf("answering option %d: %w", opt, err)
	}
	return nil
}

func (sc *serverConn) startTLS() error {
	if err := sc.replyOption(optStartTLS, repAck); err != nil {
		return err
	}
	tc := tls.Server(sc.conn, sc.s.TLSConfig)
	if err := tc.HandshakeContext(sc.s.ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	sc.conn = tc
	sc.tls = true
	sc.structured, sc.meta = false, metaSelection{}
	return nil
}

// export opens name and sends its size and transmission flags.
func (sc *serverConn) export(name string) (ServerExport, error) {
	exp, err := sc.s.Open(sc.s.ctx, name)
	if err != nil {
		return nil, fmt.Errorf("opening export %q: %w", RedactName(name), err)
	}
	size := exp.Size()
	if size < 0 {
		exp.Close()
		return nil, fmt.Errorf("export %q has a negative size %d", RedactName(name), size)
	}
	var b [exportInfoLen]byte
	binary.BigEndian.PutUint64(b[0:], uint64(size))
	binary.BigEndian.PutUint16(b[8:], sc.transFlags())
	n := exportInfoLen
	if sc.noZeroes {
		n = 10
	}
	if sc.meta.name != name {
		sc.meta = metaSelection{}
	}
	if _, err := sc.conn.Write(b[:n]); err != nil {
		exp.Close()
		return nil, fmt.Errorf("sending the size of export %q: %w", RedactName(name), err)
	}
	return exp, nil
}

// transmit serves requests until NBD_CMD_DISC, a dropped connection or a
// broken request.
func (sc *serverConn) transmit(exp ServerExport) error {
	br := bufio.NewReader(sc.conn)
	var h [requestLen]byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading a request: %w", err)
		}
		req, err := parseRequest(h[:])
		if err != nil {
			return err
		}
		switch req.typ {
		case cmdDisc:
			return nil
		case cmdRead:
			err = sc.read(exp, req)
		case cmdWrite:
			err = sc.refuseWrite(br, req)
		default:
			err = sc.reply(req.handle, EINVAL)
		}
		if err != nil {
			return err
		}
	}
}

// reply sends an error reply (errno != 0) or an empty success.
func (sc *serverConn) reply(handle uint64, errno uint32) error {
	var b [replyLen]byte
	simpleReply{errno: errno, handle: handle}.marshal(b[:])
	if _, err := sc.conn.Write(b[:]); err != nil {
		return fmt.Errorf("sending a reply: %w", err)
	}
	return nil
}

// read answers one READ: EINVAL when unaligned, out of range or too large,
// EIO when the export fails, nothing at all (the connection closes) when
// the export's error wraps ErrDropConnection.
func (sc *serverConn) read(exp ServerExport, req request) error {
	size := uint64(exp.Size())
	if req.offset%SectorSize != 0 || req.length%SectorSize != 0 || req.length > maxServerRequest ||
		req.offset > size || uint64(req.length) > size-req.offset {
		return sc.reply(req.handle, EINVAL)
	}
	msg := make([]byte, replyLen+int(req.length))
	buf := msg[replyLen:]
	n, err := exp.ReadAt(buf, int64(req.offset))
	if errors.Is(err, ErrDropConnection) {
		return fmt.Errorf("dropping the connection on a read at offset %d: %w", req.offset, err)
	}
	if n < len(buf) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		sc.s.logf("nbd: read of %d bytes at offset %d: %v", req.length, req.offset, err)
		return sc.reply(req.handle, EIO)
	}
	simpleReply{handle: req.handle}.marshal(msg)
	if _, err := sc.conn.Write(msg); err != nil {
		return fmt.Errorf("sending a reply: %w", err)
	}
	return nil
}

// refuseWrite skips a WRITE's payload and refuses it: exports are read-only.
func (sc *serverConn) refuseWrite(br *bufio.Reader, req request) error {
	if req.length > maxServerRequest {
		return fmt.Errorf("%w: a write of %d bytes", ErrProtocol, req.length)
	}
	if _, err := br.Discard(int(req.length)); err != nil {
		return fmt.Errorf("reading a write's payload: %w", err)
	}
	return sc.reply(req.handle, EINVAL)
}
