package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

const testUUID = "3b1a2c4d-5e6f-4a0b-8c9d-0e1f2a3b4c5d"

func dialPlain(t *testing.T, e Export) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), e, DialOptions{AllowPlain: true, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkRoundTrip reads the whole export through c in one ReadAt (several
// requests) and in odd pieces, and compares.
func checkRoundTrip(t *testing.T, c *Conn, want []byte) {
	t.Helper()
	if c.Size() != int64(len(want)) {
		t.Fatalf("Size = %d, want %d", c.Size(), len(want))
	}
	got := make([]byte, len(want))
	if n, err := c.ReadAt(got, 0); err != nil || n != len(want) {
		t.Fatalf("ReadAt whole = %d, %v", n, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the export read back differs from its source")
	}
	piece := make([]byte, 3*SectorSize)
	off := int64(len(want)) - SectorSize
	n, err := c.ReadAt(piece, off)
	if n != SectorSize || err != io.EOF {
		t.Fatalf("ReadAt across the end = %d, %v; want %d, io.EOF", n, err, SectorSize)
	}
	if !bytes.Equal(piece[:n], want[off:]) {
		t.Fatal("the last sector differs")
	}
	if n, err := c.ReadAt(piece, int64(len(want))); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestPlainRoundTrip(t *testing.T) {
	data := randomBytes(2*MaxRequest+5*SectorSize, 1)
	exp := &memExport{data: data}
	s, e := exportServer(t, map[string]ServerExport{testName(testUUID): exp}, nil)
	e.Name = testName(testUUID)
	c := dialPlain(t, e)
	checkRoundTrip(t, c, data)
	if got := exp.reads.Load(); got != 4 {
		t.Errorf("the server saw %d reads, want 4 (3 for 2 MiB requests, 1 for the tail)", got)
	}
	if _, err := c.ReadAt(make([]byte, 100), 0); err == nil || !strings.Contains(err.Error(), "not aligned") {
		t.Errorf("unaligned ReadAt: %v", err)
	}
	if _, err := c.ReadAt(make([]byte, SectorSize), 7); err == nil {
		t.Error("ReadAt at an unaligned offset succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the server closed the export", func() bool { return exp.closed.Load() == 1 && s.ActiveConns() == 0 })
	if _, err := c.ReadAt(make([]byte, SectorSize), 0); err == nil {
		t.Error("ReadAt after Close succeeded")
	}
}

func TestTLSRoundTrip(t *testing.T) {
	cert := newTestCert(t, "xs-host-1.example")
	data := randomBytes(MaxRequest+SectorSize, 2)
	_, e := exportServer(t, map[string]ServerExport{testName(testUUID): &memExport{data: data}}, cert.conf)
	e.Name, e.CertPEM, e.Subject = testName(testUUID), cert.pem, "xs-host-1.example"
	c, err := Dial(context.Background(), e, DialOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkRoundTrip(t, c, data)
}

func TestTLSRefusesWrongServer(t *testing.T) {
	cert := newTestCert(t, "xs-host-1.example")
	other := newTestCert(t, "xs-host-1.example")
	_, e := exportServer(t, map[string]ServerExport{testName(testUUID): &memExport{data: make([]byte, 4096)}}, cert.conf)
	e.Name = testName(testUUID)
	cases := []struct{ name, pem, subject string }{
		{"another certificate", other.pem, "xs-host-1.example"},
		{"another subject", cert.pem, "xs-host-2.example"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := e
			e.CertPEM, e.Subject = tc.pem, tc.subject
			c, err := Dial(context.Background(), e, DialOptions{Timeout: 5 * time.Second})
			if err == nil {
				c.Close()
				t.Fatal("Dial trusted a server whose certificate does not match")
			}
			if !strings.Contains(err.Error(), "TLS handshake") {
				t.Errorf("error does not name the TLS handshake: %v", err)
			}
			noSecret(t, err)
		})
	}
}

func TestTLSOptionsPolicy(t *testing.T) {
	cert := newTestCert(t, "xs.example")
	_, e := exportServer(t, map[string]ServerExport{testName(testUUID): &memExport{data: make([]byte, 4096)}}, cert.conf)
	e.Name = testName(testUUID)

	// A plain client to a TLS server: EXPORT_NAME before STARTTLS closes.
	_, err := Dial(context.Background(), e, DialOptions{AllowPlain: true, Timeout: 30 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "closed the connection") {
		t.Errorf("plain Dial to a TLS server: %v", err)
	}
	noSecret(t, err)

	// Other options before STARTTLS get NBD_REP_ERR_TLS_REQD.
	raw := rawClient(t, e)
	for _, opt := range []uint32{optList, 6, 7} {
		if typ := rawOption(t, raw, opt); typ != repErrTLSReqd {
			t.Errorf("option %d before STARTTLS answered %s, want TLS_REQD", opt, optReplyName(typ))
		}
	}
}

func TestPlainServerPolicy(t *testing.T) {
	_, e := exportServer(t, map[string]ServerExport{testName(testUUID): &memExport{data: make([]byte, 4096)}}, nil)
	e.Name = testName(testUUID)
	cert := newTestCert(t, "xs.example")
	e2 := e
	e2.CertPEM, e2.Subject = cert.pem, "xs.example"
	if _, err := Dial(context.Background(), e2, DialOptions{Timeout: 5 * time.Second}); err == nil || !strings.Contains(err.Error(), "refused TLS") {
		t.Errorf("TLS Dial to a plain server: %v", err)
	}
	if _, err := Dial(context.Background(), e, DialOptions{Timeout: 5 * time.Second}); err == nil || !strings.Contains(err.Error(), "insecure_nbd") {
		t.Errorf("plain export without AllowPlain: %v", err)
	}
	raw := rawClient(t, e)
	want := map[uint32]uint32{optList: repErrPolicy, optStartTLS: repErrPolicy, 7: repErrUnsup, 6: repErrUnsup, 99: repErrUnsup}
	for opt, w := range want {
		if typ := rawOption(t, raw, opt); typ != w {
			t.Errorf("option %d answered %s, want %s", opt, optReplyName(typ), optReplyName(w))
		}
	}
}

func TestOpenFailureClosesConnection(t *testing.T) {
	_, e := exportServer(t, map[string]ServerExport{}, nil)
	e.Name = testName(testUUID)
	_, err := Dial(context.Background(), e, DialOptions{AllowPlain: true, Timeout: 30 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "closed the connection instead of opening export") {
		t.Fatalf("Dial of a missing export: %v", err)
	}
	if !strings.Contains(err.Error(), testUUID) {
		t.Errorf("error does not name the VDI: %v", err)
	}
	noSecret(t, err)
}

// A server whose export is shorter than the size it announced answers the
// reads past the data with EIO; the connection stays usable.
func TestServerLyingAboutSize(t *testing.T) {
	data := randomBytes(8*SectorSize, 3)
	_, e := exportServer(t, map[string]ServerExport{"x": &memExport{data: data, size: 64 * SectorSize}}, nil)
	e.Name = "x"
	c := dialPlain(t, e)
	defer c.Close()
	if c.Size() != 64*SectorSize {
		t.Fatalf("Size = %d", c.Size())
	}
	_, err := c.ReadAt(make([]byte, 16*SectorSize), 0)
	var er *ErrorReply
	if !errors.As(err, &er) || er.Errno != EIO {
		t.Fatalf("read past the real data: %v, want an EIO reply", err)
	}
	got := make([]byte, 8*SectorSize)
	if _, err := c.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the connection is unusable after an error reply: %v", err)
	}
}

func TestServerRefusesBadReads(t *testing.T) {
	_, e := exportServer(t, map[string]ServerExport{"x": &memExport{data: make([]byte, 8*SectorSize)}}, nil)
	e.Name = "x"
	c := dialPlain(t, e)
	defer c.Close()
	cases := []struct {
		off int64
		n   int
	}{{0, 100}, {100, SectorSize}, {8 * SectorSize, SectorSize}, {7 * SectorSize, 2 * SectorSize}, {1 << 40, SectorSize}}
	for _, tc := range cases {
		err := c.readChunk(make([]byte, tc.n), tc.off)
		var er *ErrorReply
		if !errors.As(err, &er) || er.Errno != EINVAL {
			t.Errorf("read of %d at %d: %v, want EINVAL", tc.n, tc.off, err)
		}
	}
	if _, err := c.ReadAt(make([]byte, SectorSize), 0); err != nil {
		t.Fatalf("the connection is unusable after refusals: %v", err)
	}
}

func TestDropConnection(t *testing.T) {
	exp := &memExport{data: make([]byte, 8*SectorSize), fail: func(n int64) error {
		if n == 2 {
			return fmt.Errorf("test: %w", ErrDropConnection)
		}
		return nil
	}}
	s, e := exportServer(t, map[string]ServerExport{"x": exp}, nil)
	e.Name = "x"
	c := dialPlain(t, e)
	defer c.Close()
	if _, err := c.ReadAt(make([]byte, SectorSize), 0); err != nil {
		t.Fatal(err)
	}
	_, err := c.ReadAt(make([]byte, SectorSize), 0)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read on a dropped connection: %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err2 := c.ReadAt(make([]byte, SectorSize), 0); err2 == nil {
		t.Fatal("a broken connection read again")
	}
	eventually(t, "the server forgot the connection", func() bool { return s.ActiveConns() == 0 && exp.closed.Load() == 1 })
}

func TestServerConnectionCap(t *testing.T) {
	s, e := exportServer(t, map[string]ServerExport{"x": &memExport{data: make([]byte, 4096)}}, nil)
	e.Name = "x"
	var conns []*Conn
	for range DefaultServerConns {
		conns = append(conns, dialPlain(t, e))
	}
	if s.ActiveConns() != DefaultServerConns {
		t.Fatalf("ActiveConns = %d", s.ActiveConns())
	}
	if c, err := Dial(context.Background(), e, DialOptions{AllowPlain: true, Timeout: 30 * time.Second}); err == nil {
		c.Close()
		t.Fatal("connection 17 was served")
	}
	conns[0].Close()
	eventually(t, "a slot freed", func() bool { return s.ActiveConns() == DefaultServerConns-1 })
	c := dialPlain(t, e)
	c.Close()
	for _, c := range conns[1:] {
		c.Close()
	}
}

func TestServerCloseEndsConnections(t *testing.T) {
	exp := &memExport{data: make([]byte, 4096)}
	s := &Server{Open: func(context.Context, string) (ServerExport, error) { return exp, nil }}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	a := l.Addr().(*net.TCPAddr)
	c := dialPlain(t, Export{Address: a.IP.String(), Port: a.Port, Name: "x"})
	defer c.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve after Close: %v", err)
	}
	if s.ActiveConns() != 0 || exp.closed.Load() != 1 {
		t.Fatalf("after Close: %d connections, export closed %d times", s.ActiveConns(), exp.closed.Load())
	}
	if _, err := c.ReadAt(make([]byte, SectorSize), 0); err == nil {
		t.Fatal("read after the server closed succeeded")
	}
}

func noSecret(t *testing.T, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "OpaqueRef") {
		t.Errorf("error shows the session: %v", err)
	}
}

func TestDialValidatesExport(t *testing.T) {
	good := Export{Address: "127.0.0.1", Port: 10809, Name: testName(testUUID)}
	cases := map[string]func(e *Export){
		"no address":  func(e *Export) { e.Address = "" },
		"port 0":      func(e *Export) { e.Port = 0 },
		"port 70000":  func(e *Export) { e.Port = 70000 },
		"long name":   func(e *Export) { e.Name = strings.Repeat("a", 5000) },
		"NUL in name": func(e *Export) { e.Name = "/a\x00b?session_id=" + testSession },
		"bad UTF-8":   func(e *Export) { e.Name = "/\xff?session_id=" + testSession },
		"bad PEM":     func(e *Export) { e.CertPEM, e.Subject = "not a certificate", "x" },
	}
	for name, mutate := range cases {
		e := good
		mutate(&e)
		dialed := false
		opt := DialOptions{AllowPlain: true, Dial: func(context.Context, string, string) (net.Conn, error) {
			dialed = true
			return nil, errors.New("must not dial")
		}}
		_, err := Dial(context.Background(), e, opt)
		if err == nil || dialed {
			t.Errorf("%s: Dial = %v, dialed %v; want a refusal before dialing", name, err, dialed)
		}
		noSecret(t, err)
	}
}

func TestRedactName(t *testing.T) {
	cases := map[string]string{
		testName(testUUID):          "/" + testUUID + "?<redacted>",
		"plain":                     "plain",
		"/x/OpaqueRef:abc":          "/x/<redacted>",
		"?session_id=OpaqueRef:abc": "?<redacted>",
	}
	for in, want := range cases {
		if got := RedactName(in); got != want {
			t.Errorf("RedactName(%q) = %q, want %q", in, got, want)
		}
	}
}

// Dial gives up when its context ends, even while the server says nothing.
func TestDialContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c) // a silent server
		}
	}()
	a := l.Addr().(*net.TCPAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = Dial(ctx, Export{Address: a.IP.String(), Port: a.Port, Name: "x"}, DialOptions{AllowPlain: true})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to a silent server: %v, want context.DeadlineExceeded", err)
	}
}

func TestExportPrintsWithoutSession(t *testing.T) {
	e := Export{Address: "10.0.0.1", Port: 10809, Name: testName(testUUID), CertPEM: "pem", Subject: "host"}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		if s := fmt.Sprintf(f, e); strings.Contains(s, "OpaqueRef") || !strings.Contains(s, testUUID) {
			t.Errorf("%s of an Export = %q", f, s)
		}
	}
}

func TestExportDialer(t *testing.T) {
	data := randomBytes(4*SectorSize, 41)
	_, e := exportServer(t, map[string]ServerExport{"x": &memExport{data: data}}, nil)
	e.Name = "x"
	r, err := NewReader(context.Background(), e.Dialer(DialOptions{AllowPlain: true}), ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make([]byte, len(data))
	if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("ReadAt through Export.Dialer: %v", err)
	}
}
