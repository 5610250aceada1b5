package store

import (
	"context"
	"fmt"
	"io"
	"math"

	"golang.org/x/time/rate"
)

// RateLimits caps the requests a store sends, in requests per second;
// 0 is unlimited. Writes are Put (every kind of put), Delete, Swap and
// ExtendLock; reads are Get, Stat, List (one request per 1000 names, as S3
// pages it), ReadVersioned and LockInfo.
type RateLimits struct {
	Write float64
	Read  float64
}

// Validate checks the limits.
func (l RateLimits) Validate() error {
	for _, v := range []struct {
		what string
		n    float64
	}{{"write", l.Write}, {"read", l.Read}} {
		if v.n < 0 || math.IsNaN(v.n) || math.IsInf(v.n, 0) {
			return fmt.Errorf("store %s rate %v: want requests per second, 0 for unlimited", v.what, v.n)
		}
	}
	return nil
}

// Zero reports whether nothing is capped.
func (l RateLimits) Zero() bool { return l.Write == 0 && l.Read == 0 }

// RateLimit wraps a store and waits (never fails) before each request
// over its caps, until the context ends. Placed below the retry layer, a
// retried request waits again. It passes Swapper, Locker, OrderedLister,
// DeferredPutter, MetaPutter and TempCleaner through when the store below
// has them.
type RateLimit struct {
	Store
	write, read *rate.Limiter // nil: unlimited
}

// WithRateLimit wraps s. The burst of each cap is one second's requests
// (at least 1), so a cap of N holds over any second.
func WithRateLimit(s Store, l RateLimits) (*RateLimit, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return &RateLimit{Store: s, write: newLimiter(l.Write), read: newLimiter(l.Read)}, nil
}

func newLimiter(n float64) *rate.Limiter {
	if n == 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(n), max(1, int(n)))
}

// wait waits for l. A wait that would outlast ctx's deadline fails at
// once, as context.DeadlineExceeded (permanent for the retry layer).
func wait(ctx context.Context, l *rate.Limiter) error {
	if l == nil {
		return ctx.Err()
	}
	if err := l.Wait(ctx); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("waiting for the store's request-rate cap: %w", context.DeadlineExceeded)
	}
	return nil
}

// Unwrap implements Wrapper.
func (r *RateLimit) Unwrap() Store { return r.Store }

// Put implements Store.
func (r *RateLimit) Put(ctx context.Context, name string, rd io.ReaderAt, size int64) error {
	if err := wait(ctx, r.write); err != nil {
		return err
	}
	return r.Store.Put(ctx, name, rd, size)
}

// Get implements Store.
func (r *RateLimit) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	if err := wait(ctx, r.read); err != nil {
		return err
	}
	return r.Store.Get(ctx, name, off, length, fn)
}

// Stat implements Store.
func (r *RateLimit) Stat(ctx context.Context, name string) (Info, error) {
	if err := wait(ctx, r.read); err != nil {
		return Info{}, err
	}
	return r.Store.Stat(ctx, name)
}

// List implements Store.
func (r *RateLimit) List(ctx context.Context, prefix string, fn func(Info) error) error {
	if err := wait(ctx, r.read); err != nil {
		return err
	}
	return r.Store.List(ctx, prefix, r.pages(ctx, fn))
}

// pages waits for a read before every 1000th name of a listing.
func (r *RateLimit) pages(ctx context.Context, fn func(Info) error) func(Info) error {
	n := 0
	return func(i Info) error {
		n++
		if n%1000 == 0 {
			if err := wait(ctx, r.read); err != nil {
				return err
			}
		}
		return fn(i)
	}
}

// Delete implements Store.
func (r *RateLimit) Delete(ctx context.Context, name string) error {
	if err := wait(ctx, r.write); err != nil {
		return err
	}
	return r.Store.Delete(ctx, name)
}
