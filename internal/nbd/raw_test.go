package nbd

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// rawClient connects and exchanges the greeting, ready for options.
func rawClient(t *testing.T, e Export) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr(e))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Unix(1<<33, 0))
	if err := readGreeting(c); err != nil {
		t.Fatal(err)
	}
	return c
}

// rawOption sends option opt without data and returns the reply type.
func rawOption(t *testing.T, c net.Conn, opt uint32) uint32 {
	t.Helper()
	if err := writeOption(c, opt, nil); err != nil {
		t.Fatal(err)
	}
	var b [optReplyLen]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("option %d: %v", opt, err)
	}
	r, err := parseOptReply(b[:])
	if err != nil {
		t.Fatal(err)
	}
	if r.option != opt {
		t.Fatalf("reply for option %d, want %d", r.option, opt)
	}
	if _, err := io.CopyN(io.Discard, c, int64(r.length)); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint32(b[12:])
}
