package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
)

// RetryPolicy says how often and how patiently to retry transient errors.
type RetryPolicy struct {
	Attempts int           // total attempts, at least 1
	Base     time.Duration // first backoff
	Max      time.Duration // backoff ceiling
	// ThrottleBudget bounds the total time spent waiting on throttled
	// requests (RetryAfterError with Reason ReasonThrottled), which do not
	// use up attempts. Zero means DefaultThrottleBudget.
	ThrottleBudget time.Duration
	// MaxThrottleWait caps one wait asked for by a RetryAfterError. Zero
	// means DefaultMaxThrottleWait.
	MaxThrottleWait time.Duration
	// Patience, when set, bounds by time instead of by Attempts how long an
	// operation that keeps failing (transient errors, 503) is retried:
	// it gives up once the next wait would end more than Patience after
	// its first failure. Throttled waits keep their own budget.
	Patience time.Duration
}

// Defaults for the throttling fields of RetryPolicy.
const (
	DefaultThrottleBudget  = 30 * time.Minute
	DefaultMaxThrottleWait = time.Minute
)

// DefaultPatience is the agent's default RetryPolicy.Patience: how long
// it keeps retrying a store or vault that fails or is away, long enough to
// outlast a restart of cofferd or of its host.
const DefaultPatience = 10 * time.Minute

// DefaultRetry is the policy both commands start from: 8 attempts, backing
// off from 250 ms to 20 s with full jitter (about a minute in all), and up
// to 30 minutes of waiting while a vault throttles this agent. The agent
// sets Patience (DefaultPatience unless configured) to wait longer.
var DefaultRetry = RetryPolicy{Attempts: 8, Base: 250 * time.Millisecond, Max: 20 * time.Second,
	ThrottleBudget: DefaultThrottleBudget, MaxThrottleWait: DefaultMaxThrottleWait}

// Retry wraps a store so that transient errors are retried with exponential
// backoff. It is the only retry layer: providers are configured not to retry
// by themselves. Permanent errors (see IsPermanent) are returned at once.
type Retry struct {
	Store
	policy RetryPolicy
	clock  clock.Clock
	log    *slog.Logger
	waited atomic.Int64 // nanoseconds slept before retries
}

// Waited is the time spent so far waiting to retry (backoff, a server's
// Retry-After, throttling), summed over concurrent operations.
func (r *Retry) Waited() time.Duration { return time.Duration(r.waited.Load()) }

// sleep waits d before a retry and counts it in Waited.
func (r *Retry) sleep(ctx context.Context, d time.Duration) error {
	r.waited.Add(int64(d))
	return r.clock.Sleep(ctx, d)
}

// WithRetry wraps s. A nil logger discards retry notices.
func WithRetry(s Store, p RetryPolicy, clk clock.Clock, log *slog.Logger) *Retry {
	if p.Attempts < 1 {
		p.Attempts = 1
	}
	if p.ThrottleBudget <= 0 {
		p.ThrottleBudget = DefaultThrottleBudget
	}
	if p.MaxThrottleWait <= 0 {
		p.MaxThrottleWait = DefaultMaxThrottleWait
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Retry{Store: s, policy: p, clock: clock.Or(clk), log: log}
}

// Do runs fn under policy p exactly as Retry runs each store operation:
// transient errors are retried with backoff, permanent ones returned at
// once. It is for work that is not a Store method, such as opening a store.
func Do(ctx context.Context, p RetryPolicy, clk clock.Clock, log *slog.Logger, op, name string, fn func() error) error {
	return WithRetry(nil, p, clk, log).do(ctx, op, name, fn)
}

func (r *Retry) do(ctx context.Context, op, name string, fn func() error) error {
	var err error
	var throttled time.Duration // total sleep on throttled errors
	var firstFail time.Time     // when a non-throttled failure first came
	failed := false
	for attempt := 1; ; {
		err = fn()
		if err == nil || IsPermanent(err) {
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return fmt.Errorf("%s %s: %w (last error: %w)", op, name, cerr, err)
		}
		var ra *RetryAfterError
		if errors.As(err, &ra) && ra.Reason == ReasonThrottled {
			// The server asks us to slow down: nothing failed, so the
			// attempt count and the backoff exponent stay; only the
			// budget for throttled waiting is used up.
			d := r.throttleWait(ra, attempt)
			if throttled+d > r.policy.ThrottleBudget {
				return fmt.Errorf("%s %s: giving up after waiting %s on a throttling server (budget %s): %w",
					op, name, throttled.Round(time.Second), r.policy.ThrottleBudget, err)
			}
			throttled += d
			r.log.Info("vault asked to slow down", "op", op, "object", name, "reason", ra.Reason, "wait", d.String())
			if serr := r.sleep(ctx, d); serr != nil {
				return fmt.Errorf("%s %s: %w (last error: %w)", op, name, serr, err)
			}
			continue
		}
		var d time.Duration
		if ra != nil {
			d = r.throttleWait(ra, attempt)
		} else {
			d = r.backoff(attempt)
		}
		if !failed {
			firstFail, failed = r.clock.Now(), true
		}
		if gerr := r.giveUp(attempt, r.clock.Now().Sub(firstFail), d); gerr != "" {
			return fmt.Errorf("%s %s: %s: %w", op, name, gerr, err)
		}
		if ra != nil {
			r.log.Warn("store unavailable, retrying when the server asked", "op", op, "object", name, "attempt", attempt,
				"reason", ra.Reason, "wait", d.String())
		} else {
			r.log.Warn("store operation failed, retrying", "op", op, "object", name, "attempt", attempt, "wait", d.String(), "err", err.Error())
		}
		attempt++
		if serr := r.sleep(ctx, d); serr != nil {
			return fmt.Errorf("%s %s: %w (last error: %w)", op, name, serr, err)
		}
	}
}

// giveUp says why to stop retrying after attempt attempts, the first
// failure failing ago, before a wait of d; "" means go on.
func (r *Retry) giveUp(attempt int, failing, d time.Duration) string {
	p := r.policy
	if p.Patience <= 0 {
		if attempt >= p.Attempts {
			return fmt.Sprintf("giving up after %d attempts", attempt)
		}
		return ""
	}
	if failing+d > p.Patience {
		return fmt.Sprintf("giving up after %d attempts in %s (retry patience %s)",
			attempt, failing.Round(time.Second), p.Patience)
	}
	return ""
}

// throttleWait is the wait for a RetryAfterError: what the server asked,
// but at least the backoff this attempt would use, plus 0-20% jitter so that
// throttled clients do not return in step, capped at MaxThrottleWait.
func (r *Retry) throttleWait(ra *RetryAfterError, attempt int) time.Duration {
	d := max(ra.Wait, r.backoff(attempt))
	d += rand.N(d/5 + 1)
	return min(d, r.policy.MaxThrottleWait)
}

func (r *Retry) backoff(attempt int) time.Duration {
	d := r.policy.Base << (attempt - 1)
	if d > r.policy.Max || d <= 0 {
		d = r.policy.Max
	}
	// Full jitter keeps many agents from retrying in step.
	return d/2 + rand.N(d/2+1)
}

// Put implements Store. An ErrExists after an earlier attempt failed in
// transit means that attempt stored the object: the caller decides what that
// means for its names (content-named objects treat it as success).
func (r *Retry) Put(ctx context.Context, name string, rd io.ReaderAt, size int64) error {
	return r.do(ctx, "put", name, func() error { return r.Store.Put(ctx, name, rd, size) })
}

// PutDeferred implements DeferredPutter: writing the bytes is retried like
// Put; the commit is not (a failed fsync is not transient).
func (r *Retry) PutDeferred(ctx context.Context, name string, rd io.ReaderAt, size int64) (func(context.Context) error, error) {
	var commit func(context.Context) error
	err := r.do(ctx, "put", name, func() error {
		c, err := PutDeferred(ctx, r.Store, name, rd, size)
		commit = c
		return err
	})
	return commit, err
}

// DefersPuts implements DeferredPutter.
func (r *Retry) DefersPuts() bool { return DefersPuts(r.Store) }

// Get implements Store.
func (r *Retry) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	return r.do(ctx, "get", name, func() error { return r.Store.Get(ctx, name, off, length, fn) })
}

// Stat implements Store.
func (r *Retry) Stat(ctx context.Context, name string) (Info, error) {
	var info Info
	err := r.do(ctx, "stat", name, func() error {
		var err error
		info, err = r.Store.Stat(ctx, name)
		return err
	})
	return info, err
}

// List implements Store. A listing that fails part way is restarted; names
// already passed to fn are not passed again.
func (r *Retry) List(ctx context.Context, prefix string, fn func(Info) error) error {
	seen := map[string]struct{}{}
	var fnErr error
	err := r.do(ctx, "list", prefix, func() error {
		return r.Store.List(ctx, prefix, func(i Info) error {
			if _, ok := seen[i.Name]; ok {
				return nil
			}
			seen[i.Name] = struct{}{}
			if err := fn(i); err != nil {
				fnErr = err
				return &PermanentError{Err: err}
			}
			return nil
		})
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// Delete implements Store.
func (r *Retry) Delete(ctx context.Context, name string) error {
	return r.do(ctx, "delete", name, func() error { return r.Store.Delete(ctx, name) })
}

// RetryAfterError is a transient error with the server's own advice on when
// to try again (HTTP 429 or 503 with Retry-After). Reason is a short code
// such as "throttled"; a throttled error does not use up retry attempts,
// only the policy's ThrottleBudget.
type RetryAfterError struct {
	Wait   time.Duration
	Reason string
	Err    error
}

// ReasonThrottled is the Reason of a 429: the server asks this client to
// slow down, nothing is wrong.
const ReasonThrottled = "throttled"

func (e *RetryAfterError) Error() string {
	msg := "server asked to retry"
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	msg += " after " + e.Wait.String()
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// QuotaError is a refusal because the tenant's quota is used up. It is
// permanent, errors.Is(err, ErrNoSpace) holds, and Error is the server's
// message, which says what to do.
type QuotaError struct {
	Msg string
}

func (e *QuotaError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrNoSpace) true.
func (e *QuotaError) Is(target error) bool { return target == ErrNoSpace }
