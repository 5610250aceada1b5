package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// serverStream builds what a plain xapi-like server sends for one export of
// size bytes, then the replies given.
func serverStream(size uint64, replies ...[]byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, magicNBD)
	binary.Write(&b, binary.BigEndian, magicOpt)
	binary.Write(&b, binary.BigEndian, flagFixedNewstyle)
	binary.Write(&b, binary.BigEndian, size)
	binary.Write(&b, binary.BigEndian, transHasFlags|transReadOnly)
	b.Write(make([]byte, 124))
	for _, r := range replies {
		b.Write(r)
	}
	return b.Bytes()
}

// okReply is a successful reply to request handle with data.
func okReply(handle uint64, data []byte) []byte {
	b := make([]byte, replyLen, replyLen+len(data))
	simpleReply{handle: handle}.marshal(b)
	return append(b, data...)
}

// scriptConn is one end of a connection whose peer sent in (then closed
// its side) and takes whatever is written to it: reads never block, so a
// fuzzed peer cannot hang the code under test.
type scriptConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func newScriptConn(in []byte) *scriptConn { return &scriptConn{in: bytes.NewReader(in)} }

func (c *scriptConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// clientOver runs the client's handshake and one read over stream.
func clientOver(stream []byte, useTLS bool) error {
	conn := newScriptConn(stream)
	tlsConf, _ := clientTLS(Export{CertPEM: fuzzCert.pem, Subject: "fuzz.example"}, DialOptions{})
	if !useTLS {
		tlsConf = nil
	}
	c, err := handshake(context.Background(), conn, testName(testUUID), tlsConf, 2*time.Second)
	if err != nil {
		return err
	}
	_, err = c.ReadAt(make([]byte, 2*SectorSize), 0)
	c.Close()
	return err
}

// fuzzCert is the certificate of the fuzz targets' TLS cases.
var fuzzCert = func() testCert {
	c, err := makeTestCert("fuzz.example")
	if err != nil {
		panic(err)
	}
	return c
}()

func TestClientTruncatedStreams(t *testing.T) {
	data := randomBytes(2*SectorSize, 31)
	full := serverStream(uint64(len(data)), okReply(1, data))
	if err := clientOver(full, false); err != nil {
		t.Fatalf("the whole stream: %v", err)
	}
	greeting := 18
	for _, cut := range []int{greeting + 5, greeting + exportInfoLen - 1, greeting + exportInfoLen + 7, len(full) - 1} {
		err := clientOver(full[:cut], false)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("stream cut at %d of %d: %v, want io.ErrUnexpectedEOF", cut, len(full), err)
		}
		noSecret(t, err)
	}
	if err := clientOver(full[:greeting], false); err == nil || !bytes.Contains([]byte(err.Error()), []byte("closed the connection")) {
		t.Errorf("a server closing after EXPORT_NAME: %v", err)
	}
	wrongHandle := serverStream(uint64(len(data)), okReply(9, data))
	if err := clientOver(wrongHandle, false); !errors.Is(err, ErrProtocol) {
		t.Errorf("a reply with another handle: %v, want ErrProtocol", err)
	}
}

func FuzzClientHandshake(f *testing.F) {
	data := randomBytes(2*SectorSize, 32)
	f.Add(serverStream(uint64(len(data)), okReply(1, data)), false)
	f.Add(serverStream(1<<40, okReply(1, data)), false)
	f.Add(serverStream(3, okReply(1, data)), false)
	f.Add(serverStream(uint64(len(data)), []byte{0x67, 0x44, 0x66, 0x98, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1}), false)
	starttlsAck := make([]byte, optReplyLen)
	binary.BigEndian.PutUint64(starttlsAck, magicOptReply)
	binary.BigEndian.PutUint32(starttlsAck[8:], optStartTLS)
	binary.BigEndian.PutUint32(starttlsAck[12:], repAck)
	f.Add(append(serverStream(0)[:18], starttlsAck...), true)
	f.Add(append(serverStream(0)[:18], 0x16, 3, 1, 0, 5), true)
	f.Fuzz(func(t *testing.T, stream []byte, useTLS bool) {
		err := clientOver(stream, useTLS)
		if err != nil {
			noSecret(t, err)
		}
	})
}

func FuzzReply(f *testing.F) {
	b := make([]byte, replyLen)
	simpleReply{errno: EIO, handle: 7}.marshal(b)
	f.Add(b)
	f.Add(okReply(1, nil))
	f.Add([]byte{0x66, 0x8e, 0x33, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	opt := make([]byte, optReplyLen)
	binary.BigEndian.PutUint64(opt, magicOptReply)
	binary.BigEndian.PutUint32(opt[12:], repErrTLSReqd)
	f.Add(opt)
	f.Add(serverStream(4096)[18:])
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := parseReply(b); err == nil {
			again := make([]byte, replyLen)
			r.marshal(again)
			if !bytes.Equal(again, b) {
				t.Fatalf("reply %x parsed as %+v, which marshals to %x", b, r, again)
			}
		}
		if r, err := parseOptReply(b); err == nil && r.length > maxOptionLen {
			t.Fatalf("option reply of %d bytes accepted", r.length)
		}
		if len(b) == exportInfoLen {
			if size, err := parseExportInfo(b, testName(testUUID)); err == nil && size < 0 {
				t.Fatalf("negative size %d accepted", size)
			} else if err != nil {
				noSecret(t, err)
			}
		}
		if rq, err := parseRequest(b); err == nil {
			again := make([]byte, requestLen)
			rq.marshal(again)
			if !bytes.Equal(again, b) {
				t.Fatalf("request %x parsed as %+v, which marshals to %x", b, rq, again)
			}
		}
	})
}

// serverOver feeds stream to a server connection and returns what the
// server sent back.
func serverOver(t testing.TB, stream []byte, useTLS bool) []byte {
	exp := &memExport{data: randomBytes(8*SectorSize, 33)}
	s := &Server{Open: func(_ context.Context, name string) (ServerExport, error) {
		if name == "x" {
			return exp, nil
		}
		return nil, errors.New("no such export")
	}, ctx: context.Background()}
	if useTLS {
		s.TLSConfig = fuzzCert.conf
	}
	conn := newScriptConn(stream)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.handle(conn)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the server hung on the client's bytes")
	}
	if exp.closed.Load() > 1 {
		t.Fatalf("the export was closed %d times", exp.closed.Load())
	}
	return conn.out.Bytes()
}

// clientStream is what a client sends: the flags, options, then requests.
func clientStream(opts [][2]any, reqs ...request) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, clientFixedNewstyle)
	for _, o := range opts {
		data := []byte(o[1].(string))
		binary.Write(&b, binary.BigEndian, magicOpt)
		binary.Write(&b, binary.BigEndian, o[0].(uint32))
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.Write(data)
	}
	for _, r := range reqs {
		h := make([]byte, requestLen)
		r.marshal(h)
		b.Write(h)
	}
	return b.Bytes()
}

func FuzzServerOptions(f *testing.F) {
	read := request{typ: cmdRead, handle: 1, length: SectorSize}
	f.Add(clientStream([][2]any{{optExportName, "x"}}, read, request{typ: cmdDisc}), false)
	f.Add(clientStream([][2]any{{optList, ""}, {uint32(7), "abc"}, {optStartTLS, ""}, {optExportName, "x"}},
		request{typ: cmdRead, offset: 100, length: 7}, request{typ: cmdWrite, length: 4}), false)
	f.Add(clientStream([][2]any{{optExportName, "y"}}), false)
	f.Add(clientStream([][2]any{{optAbort, ""}}), false)
	f.Add(clientStream([][2]any{{optList, ""}, {optStartTLS, ""}}), true)
	f.Add(clientStream([][2]any{{optExportName, "x"}}), true)
	f.Fuzz(func(t *testing.T, stream []byte, useTLS bool) {
		serverOver(t, stream, useTLS)
	})
}

func TestServerOptionsTranscript(t *testing.T) {
	read := request{typ: cmdRead, handle: 4, length: SectorSize}
	out := serverOver(t, clientStream([][2]any{{optList, ""}, {optExportName, "x"}}, read, request{typ: cmdDisc}), false)
	want := 18 + optReplyLen + exportInfoLen + replyLen + SectorSize
	if len(out) != want {
		t.Fatalf("the server sent %d bytes, want %d", len(out), want)
	}
	r, err := parseOptReply(out[18 : 18+optReplyLen])
	if err != nil || r.typ != repErrPolicy || r.option != optList {
		t.Fatalf("LIST answered %+v, %v; want ERR_POLICY", r, err)
	}
	rep, err := parseReply(out[18+optReplyLen+exportInfoLen:][:replyLen])
	if err != nil || rep.errno != 0 || rep.handle != 4 {
		t.Fatalf("READ answered %+v, %v", rep, err)
	}
	if out := serverOver(t, clientStream([][2]any{{optExportName, "x"}}), true); len(out) != 18 {
		t.Fatalf("EXPORT_NAME before STARTTLS got %d bytes back, want the greeting only", len(out))
	}
}

func TestServerAbortAndLogs(t *testing.T) {
	if out := serverOver(t, clientStream([][2]any{{optAbort, ""}, {optExportName, "x"}}), false); len(out) != 18 {
		t.Errorf("ABORT got %d bytes back, want the greeting only (xapi closes without a reply)", len(out))
	}
	var logs bytes.Buffer
	s := &Server{Open: func(context.Context, string) (ServerExport, error) {
		return nil, errors.New("VDI not found")
	}, ctx: context.Background(), Logf: func(f string, a ...any) { fmt.Fprintf(&logs, f+"\n", a...) }}
	conn := newScriptConn(clientStream([][2]any{{optExportName, testName(testUUID)}}))
	s.handle(conn)
	if !strings.Contains(logs.String(), testUUID) || strings.Contains(logs.String(), "OpaqueRef") {
		t.Errorf("the log of a failed open names no VDI or shows the session: %q", logs.String())
	}
}
