package nbd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
)

// HostLimit is a budget of connections to one host shared by Readers: xapi
// serves at most 16 NBD connections per host.
type HostLimit struct{ slots chan struct{} }

// NewHostLimit returns a budget of n connections (16 when n <= 0).
func NewHostLimit(n int) *HostLimit {
	if n <= 0 {
		n = DefaultServerConns
	}
	return &HostLimit{slots: make(chan struct{}, n)}
}

func (h *HostLimit) acquire(ctx context.Context) error {
	if h == nil {
		return nil
	}
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *HostLimit) tryAcquire() bool {
	if h == nil {
		return true
	}
	select {
	case h.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (h *HostLimit) release() {
	if h != nil {
		<-h.slots
	}
}

// ReaderOptions tune a Reader.
type ReaderOptions struct {
	// MaxConns caps the Reader's connections; 4 when 0.
	MaxConns int
	// Host, when set, is a budget shared with other Readers of the same
	// host; a Reader waits for a slot for its first connection and makes
	// do with the connections it has when the budget is spent.
	Host *HostLimit
	// Retries is how many times a read is tried again after its connection
	// dropped; 3 when 0, none when negative.
	Retries int
	// Backoff is the wait before the first retry, doubled for each next
	// one; 250 ms when 0.
	Backoff time.Duration
	// Clock waits the backoff; clock.Real when nil.
	Clock clock.Clock
}

// ReaderStats count a Reader's work.
type ReaderStats struct {
	BytesRead  int64 // bytes returned to callers
	Requests   int64 // NBD READ requests answered, retries included
	Reconnects int64 // connections dialed to replace one that failed
}

// Reader is an io.ReaderAt over one export with a bounded pool of
// connections, safe for concurrent use. It dials one connection at a time
// (two connections opening at once for one VDI race in xapi and fail with
// VDI_IN_USE), closes a connection whose read fails and tries the read again
// on a fresh one.
type Reader struct {
	ctx  context.Context
	dial func(ctx context.Context) (*Conn, error)
	opt  ReaderOptions
	size int64

	mu      sync.Mutex
	idle    []*Conn
	open    int
	dialing bool
	closed  bool
	dropped int           // failed connections not yet replaced
	wake    chan struct{} // closed and replaced when a connection frees up

	bytesRead, requests, reconnects atomic.Int64
}

// NewReader dials the first connection at once to learn the export's size.
// ctx bounds every dial and retry of the Reader's life.
func NewReader(ctx context.Context, dial func(ctx context.Context) (*Conn, error), opt ReaderOptions) (*Reader, error) {
	if opt.MaxConns <= 0 {
		opt.MaxConns = 4
	}
	if opt.Retries == 0 {
		opt.Retries = 3
	}
	if opt.Backoff <= 0 {
		opt.Backoff = 250 * time.Millisecond
	}
	opt.Clock = clock.Or(opt.Clock)
	if err := opt.Host.acquire(ctx); err != nil {
		return nil, fmt.Errorf("nbd: waiting for a connection slot: %w", err)
	}
	c, err := dial(ctx)
	if err != nil {
		opt.Host.release()
		return nil, err
	}
	r := &Reader{ctx: ctx, dial: dial, opt: opt, size: c.Size(), wake: make(chan struct{})}
	r.open = 1
	r.idle = []*Conn{c}
	return r, nil
}

// Size is the export's size in bytes.
func (r *Reader) Size() int64 { return r.size }

// Stats returns the counters so far.
func (r *Reader) Stats() ReaderStats {
	return ReaderStats{BytesRead: r.bytesRead.Load(), Requests: r.requests.Load(), Reconnects: r.reconnects.Load()}
}

var errReaderClosed = errors.New("nbd: read on a closed Reader")

// errSizeChanged marks a connection whose export size differs from the
// first connection's: the VDI changed under the Reader, which retrying
// cannot mend.
var errSizeChanged = errors.New("nbd: the export's size changed between connections")

// signal wakes the goroutines waiting for a connection; r.mu is held.
func (r *Reader) signal() {
	close(r.wake)
	r.wake = make(chan struct{})
}

// get returns an idle connection, dials one when none is idle, no dial is
// in flight and the budgets allow, or waits.
func (r *Reader) get() (*Conn, error) {
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, errReaderClosed
		}
		if n := len(r.idle); n > 0 {
			c := r.idle[n-1]
			r.idle = r.idle[:n-1]
			r.mu.Unlock()
			return c, nil
		}
		if !r.dialing && r.open < r.opt.MaxConns && (r.open == 0 || r.opt.Host.tryAcquire()) {
			r.dialing = true
			first := r.open == 0
			r.mu.Unlock()
			return r.dialOne(first)
		}
		wake := r.wake
		r.mu.Unlock()
		select {
		case <-wake:
		case <-r.ctx.Done():
			return nil, r.ctx.Err()
		}
	}
}

// dialOne dials a connection; r.dialing is set. first: the Reader has no
// connection, so it waits for a host slot (otherwise one is already held).
func (r *Reader) dialOne(first bool) (*Conn, error) {
	var c *Conn
	err := func() error {
		if first {
			if err := r.opt.Host.acquire(r.ctx); err != nil {
				return fmt.Errorf("nbd: waiting for a connection slot: %w", err)
			}
		}
		var err error
		if c, err = r.dial(r.ctx); err != nil {
			r.opt.Host.release()
			return err
		}
		if c.Size() != r.size {
			c.Close()
			r.opt.Host.release()
			return fmt.Errorf("%w: %d bytes, then %d", errSizeChanged, r.size, c.Size())
		}
		return nil
	}()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dialing = false
	r.signal()
	if err != nil {
		return nil, err
	}
	r.open++
	if r.dropped > 0 {
		r.dropped--
		r.reconnects.Add(1)
	}
	return c, nil
}

// put returns c to the pool, or closes it when it failed.
func (r *Reader) put(c *Conn, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.signal()
	if !failed && !r.closed {
		r.idle = append(r.idle, c)
		return
	}
	if failed {
		r.dropped++
	}
	r.open--
	c.Close()
	r.opt.Host.release()
}

// ReadAt reads len(p) bytes at off; off and len(p) must be multiples of
// SectorSize. A read reaching past the end returns the bytes before it and
// io.EOF.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off%SectorSize != 0 || len(p)%SectorSize != 0 || off < 0 {
		return 0, fmt.Errorf("nbd: read of %d bytes at offset %d is not aligned to %d-byte sectors, as xapi requires", len(p), off, SectorSize)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := p[:min(int64(len(p)), r.size-off)]
	if len(want)%SectorSize != 0 {
		return 0, fmt.Errorf("nbd: the export is %d bytes, not a whole number of sectors: its tail cannot be read", r.size)
	}
	n := 0
	for n < len(want) {
		k := min(len(want)-n, MaxRequest)
		if err := r.readChunk(want[n:n+k], off+int64(n)); err != nil {
			return n, err
		}
		n += k
		r.bytesRead.Add(int64(k))
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readChunk reads one request's worth, retrying it on a fresh connection
// after a failed one (up to Retries times) and once after an error reply.
func (r *Reader) readChunk(p []byte, off int64) error {
	failures, replied := 0, false
	for {
		c, err := r.get()
		if err == nil {
			_, err = c.ReadAt(p, off)
			var er *ErrorReply
			r.put(c, err != nil && !errors.As(err, &er))
			if err == nil || errors.As(err, &er) {
				r.requests.Add(1)
			}
			if err == nil {
				return nil
			}
			if errors.As(err, &er) {
				if replied {
					return err
				}
				replied = true
				continue
			}
		}
		if errors.Is(err, errReaderClosed) || errors.Is(err, errSizeChanged) || r.ctx.Err() != nil {
			return err
		}
		if failures++; failures > max(r.opt.Retries, 0) {
			return fmt.Errorf("nbd: read of %d bytes at offset %d failed %d times, each on a fresh connection: %w",
				len(p), off, failures, err)
		}
		if err := r.opt.Clock.Sleep(r.ctx, r.opt.Backoff<<(failures-1)); err != nil {
			return err
		}
	}
}

// Close closes the idle connections now and the busy ones when their
// reads end; later reads fail.
func (r *Reader) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var first error
	for _, c := range r.idle {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
		r.open--
		r.opt.Host.release()
	}
	r.idle = nil
	r.signal()
	return first
}
