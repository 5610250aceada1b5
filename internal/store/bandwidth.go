package store

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/cofferhq/coffer/internal/clock"
)

// Limits are bytes per second; 0 means no limit.
type Limits struct {
	Put int64 // bytes of put bodies
	Get int64 // bytes of get bodies
}

// LimitSchedule says the limits in force at a time (bandwidth windows that
// differ by time of day).
type LimitSchedule func(time.Time) Limits

// Bandwidth meters the bytes of put and get bodies against a schedule of
// limits. One Bandwidth is shared by every store that WithBandwidth wraps
// with it and by every upload running at once, so together they stay under
// the limit. Its bucket never holds more than one piece of a body
// (MaxBurst, less for low limits), so over any second or more the bytes
// moved exceed the limit by at most that piece. The schedule is read on
// the clock before every piece: a new window's limit applies from its
// first piece on.
type Bandwidth struct {
	clock    clock.Clock
	schedule LimitSchedule
	mu       sync.Mutex // guards the limiters' settings against two pieces changing them at once
	put, get meter
}

// MaxBurst is the largest piece of a body metered at once, and the most
// the limiter lets through without waiting.
const MaxBurst = 64 << 10

// minBurst keeps very low limits from metering byte by byte.
const minBurst = 512

type meter struct {
	lim   *rate.Limiter
	limit int64 // the limit lim is set to; 0 none
}

// NewBandwidth returns a meter for schedule on clock c (nil: the real one).
func NewBandwidth(c clock.Clock, schedule LimitSchedule) *Bandwidth {
	return &Bandwidth{clock: clock.Or(c), schedule: schedule,
		put: meter{lim: rate.NewLimiter(rate.Inf, MaxBurst)}, get: meter{lim: rate.NewLimiter(rate.Inf, MaxBurst)}}
}

// ConstantLimits is a schedule with the same limits at every time.
func ConstantLimits(l Limits) LimitSchedule { return func(time.Time) Limits { return l } }

// burstFor is the bucket size for limit: a sixteenth of a second's bytes,
// within [minBurst, MaxBurst].
func burstFor(limit int64) int {
	return int(min(max(limit/16, minBurst), MaxBurst))
}

// wait blocks until n more bytes (n <= MaxBurst) may move in direction
// get (else put). It returns the piece size allowed now, at most n.
func (b *Bandwidth) wait(ctx context.Context, get bool, n int) (int, error) {
	now := b.clock.Now()
	limits := b.schedule(now)
	b.mu.Lock()
	m, limit := &b.put, limits.Put
	if get {
		m, limit = &b.get, limits.Get
	}
	if limit != m.limit {
		m.limit = limit
		if limit <= 0 {
			m.lim.SetLimitAt(now, rate.Inf)
			m.lim.SetBurstAt(now, MaxBurst)
		} else {
			m.lim.SetLimitAt(now, rate.Limit(limit))
			m.lim.SetBurstAt(now, burstFor(limit))
		}
	}
	if limit <= 0 {
		b.mu.Unlock()
		return n, nil
	}
	n = min(n, burstFor(limit))
	r := m.lim.ReserveN(now, n)
	b.mu.Unlock()
	if !r.OK() {
		return 0, &PermanentError{Err: errBurst}
	}
	if d := r.DelayFrom(now); d > 0 {
		if err := b.clock.Sleep(ctx, d); err != nil {
			r.CancelAt(b.clock.Now())
			return 0, err
		}
	}
	return n, nil
}

var errBurst = errors.New("bandwidth limiter: a piece larger than its bucket (a bug)")

// meteredReaderAt reads through b, piece by piece.
type meteredReaderAt struct {
	ctx context.Context
	b   *Bandwidth
	r   io.ReaderAt
}

func (m meteredReaderAt) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		n, err := m.b.wait(m.ctx, false, min(len(p)-done, MaxBurst))
		if err != nil {
			return done, err
		}
		k, err := m.r.ReadAt(p[done:done+n], off+int64(done))
		done += k
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// meteredReader reads through b, piece by piece.
type meteredReader struct {
	ctx context.Context
	b   *Bandwidth
	r   io.Reader
}

func (m meteredReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return m.r.Read(p)
	}
	n, err := m.b.wait(m.ctx, true, min(len(p), MaxBurst))
	if err != nil {
		return 0, err
	}
	return m.r.Read(p[:n])
}

// Bandwidthed is a store whose put and get bodies go through a Bandwidth.
type Bandwidthed struct {
	Store
	b *Bandwidth
}

// WithBandwidth wraps s so that its put and get bodies move no faster than
// b allows. Put it below the retry layer: a retried put is metered again,
// as it moves its bytes again.
func WithBandwidth(s Store, b *Bandwidth) *Bandwidthed { return &Bandwidthed{Store: s, b: b} }

// Unwrap implements Wrapper.
func (w *Bandwidthed) Unwrap() Store { return w.Store }

func (w *Bandwidthed) body(ctx context.Context, r io.ReaderAt) io.ReaderAt {
	return meteredReaderAt{ctx: ctx, b: w.b, r: r}
}

// Put implements Store.
func (w *Bandwidthed) Put(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	return w.Store.Put(ctx, name, w.body(ctx, r), size)
}

// PutDeferred implements DeferredPutter: the bytes are metered as they are
// taken.
func (w *Bandwidthed) PutDeferred(ctx context.Context, name string, r io.ReaderAt, size int64) (func(context.Context) error, error) {
	return PutDeferred(ctx, w.Store, name, w.body(ctx, r), size)
}

// DefersPuts implements DeferredPutter.
func (w *Bandwidthed) DefersPuts() bool { return DefersPuts(w.Store) }

// PutMeta implements MetaPutter.
func (w *Bandwidthed) PutMeta(ctx context.Context, name string, r io.ReaderAt, size int64, m ObjectMeta) error {
	return PutWithMeta(ctx, w.Store, name, w.body(ctx, r), size, m)
}

// Get implements Store.
func (w *Bandwidthed) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	return w.Store.Get(ctx, name, off, length, func(r io.Reader) error {
		return fn(meteredReader{ctx: ctx, b: w.b, r: r})
	})
}

// RemoveStaleTemp implements TempCleaner.
func (w *Bandwidthed) RemoveStaleTemp(ctx context.Context) (TempReport, error) {
	return RemoveStaleTemp(ctx, w.Store)
}

// ReadVersioned implements Swapper, unmetered: the vault's small state
// objects are not backup traffic.
func (w *Bandwidthed) ReadVersioned(ctx context.Context, name string, max int64) ([]byte, string, error) {
	sw, err := swapperOf(w.Store)
	if err != nil {
		return nil, "", err
	}
	return sw.ReadVersioned(ctx, name, max)
}

// Swap implements Swapper, unmetered.
func (w *Bandwidthed) Swap(ctx context.Context, name string, b []byte, ifVersion string) (string, error) {
	sw, err := swapperOf(w.Store)
	if err != nil {
		return "", err
	}
	return sw.Swap(ctx, name, b, ifVersion)
}
