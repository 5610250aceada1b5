package nbd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serverOverFull feeds stream to a full-mode server connection serving
// export "x" (holes and data) and returns what the server sent back and
// logged.
func serverOverFull(t testing.TB, stream []byte, useTLS bool) (out []byte, logs string) {
	exp := newHoleExport([]Extent{{Len: 1000, Hole: true}, {Len: 2000}, {Len: 1096, Hole: true}}, 81)
	var mu sync.Mutex
	var lb strings.Builder
	var opens atomic.Int64
	s := &Server{Full: true, MaxInFlight: 4, ctx: context.Background(),
		Open: func(_ context.Context, name string) (ServerExport, error) {
			if name == "x" {
				opens.Add(1)
				return exp, nil
			}
			return nil, errors.New("no such export")
		},
		List: func(context.Context) ([]string, error) { return []string{"x", testName(testUUID)}, nil },
		Logf: func(f string, a ...any) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(&lb, f+"\n", a...)
		},
	}
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
		t.Fatal("the full-mode server hung on the client's bytes")
	}
	if n, o := exp.closed.Load(), opens.Load(); n != o {
		t.Fatalf("the export was opened %d times and closed %d times", o, n)
	}
	mu.Lock()
	defer mu.Unlock()
	return conn.out.Bytes(), lb.String()
}

func FuzzServerModern(f *testing.F) {
	sr := [2]any{optStructuredReply, ""}
	meta := [2]any{optSetMetaContext, string(metaData("x", allocationContext))}
	goX := [2]any{optGo, string(nameData("x"))}
	read := request{typ: cmdRead, handle: 1, offset: 900, length: 2200}
	f.Add(clientStream([][2]any{sr, meta, goX}, read, request{typ: cmdBlockStatus, handle: 2, length: 4096},
		request{typ: cmdRead, flags: cmdFlagDF, handle: 3, length: 4096}, request{typ: cmdDisc}), false)
	f.Add(clientStream([][2]any{{optList, ""}, {optInfo, string(nameData("x"))}, {optInfo, string(nameData(testName(testUUID)))},
		{optListMetaContext, string(metaData("x"))}, goX}, read, request{typ: cmdWrite, length: 4}), false)
	f.Add(clientStream([][2]any{sr, {optGo, "\x00\x00\x00\x09x"}, {optSetMetaContext, "\x00\x00\x00\x01x\xff\xff\xff\xff"}, goX},
		request{typ: cmdBlockStatus, flags: cmdFlagReqOne, length: 1 << 31}, request{typ: cmdCache, length: 8}), false)
	f.Add(clientStream([][2]any{{optExportName, "x"}}, read, request{typ: cmdTrim, length: 1}), false)
	f.Add(clientStream([][2]any{{optAbort, ""}}), false)
	f.Add(clientStream([][2]any{goX, {optStartTLS, ""}}), true)
	f.Fuzz(func(t *testing.T, stream []byte, useTLS bool) {
		_, logs := serverOverFull(t, stream, useTLS)
		if strings.Contains(logs, "OpaqueRef:") {
			t.Fatalf("the server logged a session: %q", logs)
		}
	})
}

// The option parsers never accept data they did not consume exactly.
func FuzzFullOptionParsers(f *testing.F) {
	f.Add(nameData("x"))
	f.Add(metaData("x", allocationContext, "base:"))
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 3})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if name, err := parseInfoRequest(b); err == nil && len(name)+6 > len(b) {
			t.Fatalf("info request %x parsed as a name of %d bytes", b, len(name))
		}
		if name, qs, err := parseMetaRequest(b); err == nil {
			again := metaData(name, qs...)
			if string(again) != string(b) {
				t.Fatalf("meta request %x parsed as %q %q, which marshals to %x", b, name, qs, again)
			}
		}
	})
}
