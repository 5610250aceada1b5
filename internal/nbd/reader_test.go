package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dialer dials e and counts dials, the most in flight at once.
type dialer struct {
	e                 Export
	delay             time.Duration
	inFlight, maxSeen atomic.Int64
	dials             atomic.Int64
}

func (d *dialer) dial(ctx context.Context) (*Conn, error) {
	n := d.inFlight.Add(1)
	defer d.inFlight.Add(-1)
	for {
		m := d.maxSeen.Load()
		if n <= m || d.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	d.dials.Add(1)
	time.Sleep(d.delay)
	return Dial(ctx, d.e, DialOptions{AllowPlain: true, Timeout: 30 * time.Second})
}

// countingServer serves exp and records the most connections open at once.
func countingServer(t *testing.T, exp ServerExport) (*Server, Export, *atomic.Int64) {
	t.Helper()
	var maxConns atomic.Int64
	var s *Server
	s = &Server{Open: func(context.Context, string) (ServerExport, error) {
		n := int64(s.ActiveConns())
		for {
			m := maxConns.Load()
			if n <= m || maxConns.CompareAndSwap(m, n) {
				break
			}
		}
		return exp, nil
	}}
	host, port := startServer(t, s)
	return s, Export{Address: host, Port: port, Name: "x"}, &maxConns
}

var fastRetry = ReaderOptions{Backoff: time.Millisecond}

func readAll(t *testing.T, r io.ReaderAt, size int64) []byte {
	t.Helper()
	got := make([]byte, size)
	if n, err := r.ReadAt(got, 0); err != nil || int64(n) != size {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	return got
}

func TestReaderReconnectsAfterDrop(t *testing.T) {
	data := randomBytes(4*MaxRequest+3*SectorSize, 21)
	exp := &memExport{data: data, fail: func(n int64) error {
		if n == 3 {
			return fmt.Errorf("test: %w", ErrDropConnection)
		}
		return nil
	}}
	_, e, _ := countingServer(t, exp)
	d := &dialer{e: e}
	r, err := NewReader(context.Background(), d.dial, fastRetry)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !bytes.Equal(readAll(t, r, r.Size()), data) {
		t.Fatal("the Reader's bytes differ after a dropped connection")
	}
	st := r.Stats()
	if st.Reconnects != 1 || st.BytesRead != int64(len(data)) || st.Requests != 5 {
		t.Fatalf("Stats = %+v, want 1 reconnect, %d bytes, 5 requests", st, len(data))
	}
	if d.dials.Load() != 2 {
		t.Errorf("%d dials, want 2", d.dials.Load())
	}
}

func TestReaderGivesUpAfterRetries(t *testing.T) {
	exp := &memExport{data: make([]byte, 16*SectorSize), fail: func(int64) error {
		return fmt.Errorf("test: %w", ErrDropConnection)
	}}
	_, e, _ := countingServer(t, exp)
	d := &dialer{e: e}
	opt := fastRetry
	opt.Retries = 2
	r, err := NewReader(context.Background(), d.dial, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.ReadAt(make([]byte, SectorSize), 0)
	if err == nil || !strings.Contains(err.Error(), "failed 3 times") || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadAt on a server that keeps dropping: %v", err)
	}
	if got := exp.reads.Load(); got != 3 {
		t.Errorf("the server saw %d reads, want 3 (1 + 2 retries)", got)
	}
}

func TestReaderErrorReplies(t *testing.T) {
	var failing atomic.Int64 // reads that answer EIO
	exp := &memExport{data: randomBytes(8*SectorSize, 22), fail: func(int64) error {
		if failing.Add(-1) >= 0 {
			return errors.New("test: disk error")
		}
		return nil
	}}
	_, e, _ := countingServer(t, exp)
	d := &dialer{e: e}
	r, err := NewReader(context.Background(), d.dial, fastRetry)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	failing.Store(1)
	if !bytes.Equal(readAll(t, r, r.Size()), exp.data) {
		t.Fatal("bytes differ after one EIO")
	}
	failing.Store(2)
	_, err = r.ReadAt(make([]byte, SectorSize), 0)
	var er *ErrorReply
	if !errors.As(err, &er) || er.Errno != EIO {
		t.Fatalf("two EIO replies: %v, want the EIO reply", err)
	}
	if d.dials.Load() != 1 || r.Stats().Reconnects != 0 {
		t.Errorf("an error reply cost a connection: %d dials, %+v", d.dials.Load(), r.Stats())
	}
}

func TestReaderConcurrent(t *testing.T) {
	data := randomBytes(MaxRequest, 23)
	_, e, maxConns := countingServer(t, &memExport{data: data})
	d := &dialer{e: e, delay: 20 * time.Millisecond}
	r, err := NewReader(context.Background(), d.dial, ReaderOptions{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	readConcurrently(t, r, data, 8)
	if d.maxSeen.Load() != 1 {
		t.Errorf("%d dials were in flight at once, want 1", d.maxSeen.Load())
	}
	if m := maxConns.Load(); m > 4 || d.dials.Load() > 4 {
		t.Errorf("%d connections open at once, %d dials; MaxConns is 4", m, d.dials.Load())
	}
	if d.dials.Load() < 2 {
		t.Errorf("8 concurrent readers used %d connection", d.dials.Load())
	}
}

// readConcurrently reads random ranges of data through r from n goroutines.
func readConcurrently(t *testing.T, r io.ReaderAt, data []byte, n int) {
	t.Helper()
	sectors := len(data) / SectorSize
	var wg sync.WaitGroup
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := mrand.New(mrand.NewPCG(uint64(g), 7))
			for range 12 {
				off := rnd.IntN(sectors) * SectorSize
				k := (1 + rnd.IntN(min(sectors-off/SectorSize, 256))) * SectorSize
				buf := make([]byte, k)
				if _, err := r.ReadAt(buf, int64(off)); err != nil {
					t.Errorf("ReadAt(%d, %d): %v", k, off, err)
					return
				}
				if !bytes.Equal(buf, data[off:off+k]) {
					t.Errorf("ReadAt(%d, %d) differs", k, off)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestReaderHostLimit(t *testing.T) {
	data := randomBytes(MaxRequest, 24)
	_, e, maxConns := countingServer(t, &memExport{data: data})
	host := NewHostLimit(3)
	var readers []*Reader
	for range 2 {
		r, err := NewReader(context.Background(), (&dialer{e: e, delay: 5 * time.Millisecond}).dial, ReaderOptions{MaxConns: 4, Host: host})
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, r)
	}
	var wg sync.WaitGroup
	for _, r := range readers {
		wg.Add(1)
		go func() { defer wg.Done(); readConcurrently(t, r, data, 6) }()
	}
	wg.Wait()
	if m := maxConns.Load(); m > 3 {
		t.Errorf("%d connections open at once; the host budget is 3", m)
	}
	for _, r := range readers {
		r.Close()
	}
	if len(host.slots) != 0 {
		t.Errorf("%d host slots still held after Close", len(host.slots))
	}
}

func TestReaderSizeChange(t *testing.T) {
	var opens atomic.Int64
	s := &Server{Open: func(context.Context, string) (ServerExport, error) {
		if opens.Add(1) == 1 {
			return &memExport{data: make([]byte, 8*SectorSize), fail: func(int64) error { return ErrDropConnection }}, nil
		}
		return &memExport{data: make([]byte, 16*SectorSize)}, nil
	}}
	host, port := startServer(t, s)
	d := &dialer{e: Export{Address: host, Port: port, Name: "x"}}
	r, err := NewReader(context.Background(), d.dial, fastRetry)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.ReadAt(make([]byte, SectorSize), 0)
	if !errors.Is(err, errSizeChanged) {
		t.Fatalf("a redial to a resized export: %v", err)
	}
	if d.dials.Load() != 2 {
		t.Errorf("%d dials: a size change must not be retried", d.dials.Load())
	}
}

func TestReaderClose(t *testing.T) {
	s, e, _ := countingServer(t, &memExport{data: make([]byte, 8*SectorSize)})
	r, err := NewReader(context.Background(), (&dialer{e: e}).dial, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadAt(make([]byte, SectorSize), 0); !errors.Is(err, errReaderClosed) {
		t.Fatalf("ReadAt after Close: %v", err)
	}
	eventually(t, "the server saw the disconnect", func() bool { return s.ActiveConns() == 0 })
}

// An export whose size is not a whole number of sectors: the tail cannot
// be read, and asking for it is refused without costing the connection.
func TestReaderUnalignedTail(t *testing.T) {
	data := randomBytes(8*SectorSize+100, 25)
	_, e, _ := countingServer(t, &memExport{data: data})
	d := &dialer{e: e}
	r, err := NewReader(context.Background(), d.dial, fastRetry)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.ReadAt(make([]byte, 9*SectorSize), 0); err == nil || !strings.Contains(err.Error(), "whole number of sectors") {
		t.Fatalf("ReadAt over the tail: %v", err)
	}
	got := make([]byte, 8*SectorSize)
	if _, err := r.ReadAt(got, 0); err != nil || !bytes.Equal(got, data[:len(got)]) {
		t.Fatalf("ReadAt of the whole sectors: %v", err)
	}
	if _, err := r.ReadAt(make([]byte, 100), 0); err == nil {
		t.Fatal("an unaligned ReadAt succeeded")
	}
	if d.dials.Load() != 1 {
		t.Errorf("%d dials: refusals must not cost connections", d.dials.Load())
	}
}

// A read waiting for a busy connection gives up when the Reader's context
// ends.
func TestReaderContextEndsWait(t *testing.T) {
	release := make(chan struct{})
	exp := &memExport{data: make([]byte, 8*SectorSize), fail: func(int64) error { <-release; return nil }}
	_, e, _ := countingServer(t, exp)
	ctx, cancel := context.WithCancel(context.Background())
	r, err := NewReader(ctx, (&dialer{e: e}).dial, ReaderOptions{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	first := make(chan error, 1)
	go func() { _, err := r.ReadAt(make([]byte, SectorSize), 0); first <- err }()
	eventually(t, "the first read reached the server", func() bool { return exp.reads.Load() == 1 })
	second := make(chan error, 1)
	go func() { _, err := r.ReadAt(make([]byte, SectorSize), 0); second <- err }()
	cancel()
	select {
	case err := <-second:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the waiting read: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting read did not end with its context")
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("the read in flight: %v", err)
	}
}
