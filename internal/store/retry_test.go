package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// fakeClock records sleeps instead of sleeping. onSleep, if set, runs at
// each sleep (to cancel a context mid-backoff).
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	sleeps  []time.Duration
	onSleep func()
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	f := c.onSleep
	c.mu.Unlock()
	if f != nil {
		f()
	}
	return ctx.Err()
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

var testPolicy = store.RetryPolicy{Attempts: 5, Base: 100 * time.Millisecond, Max: 300 * time.Millisecond}

// retryStack is Retry over Faulty over a fresh Local.
func retryStack(t *testing.T, p store.RetryPolicy) (*store.Retry, *store.Faulty, *fakeClock) {
	t.Helper()
	f := store.NewFaulty(newLocal(t))
	c := &fakeClock{}
	return store.WithRetry(f, p, c, nil), f, c
}

func TestRetryTransientUpToAttempts(t *testing.T) {
	r, f, c := retryStack(t, testPolicy)
	f.Add(store.FaultRule{Op: "stat", Times: -1})
	_, err := r.Stat(t.Context(), "config")
	if !errors.Is(err, store.ErrInjected) || !strings.Contains(err.Error(), "giving up after 5 attempts") {
		t.Errorf("Stat = %v; want the injected error after 5 attempts", err)
	}
	if n := f.Ops("stat"); n != 5 {
		t.Errorf("tried %d times, want 5", n)
	}
	sleeps := c.Sleeps()
	if len(sleeps) != 4 {
		t.Fatalf("slept %d times, want 4", len(sleeps))
	}
	// Full jitter: attempt k waits in [d/2, d], d = min(Base<<(k-1), Max).
	for i, d := range sleeps {
		ceil := min(testPolicy.Base<<i, testPolicy.Max)
		if d < ceil/2 || d > ceil {
			t.Errorf("sleep %d = %v, want within [%v, %v]", i+1, d, ceil/2, ceil)
		}
	}
}

func TestRetryTransientThenSuccess(t *testing.T) {
	r, f, c := retryStack(t, testPolicy)
	if err := r.Put(t.Context(), "config", bytes.NewReader([]byte("cfg")), 3); err != nil {
		t.Fatal(err)
	}
	f.Add(store.FaultRule{Op: "stat", Times: 2})
	info, err := r.Stat(t.Context(), "config")
	if err != nil || info.Size != 3 {
		t.Errorf("Stat = %+v, %v; want size 3", info, err)
	}
	if n := f.Ops("stat"); n != 3 {
		t.Errorf("tried %d times, want 3", n)
	}
	if n := len(c.Sleeps()); n != 2 {
		t.Errorf("slept %d times, want 2", n)
	}
}

func TestRetryNeverRetriesPermanent(t *testing.T) {
	cases := []error{
		store.ErrNotFound, store.ErrExists, store.ErrDenied, store.ErrInvalidRange,
		store.ErrNoSpace, store.ErrInvalidName, &store.PermanentError{Err: errors.New("bad request")},
		fmt.Errorf("wrapped: %w", store.ErrDenied), context.Canceled,
		store.ErrConflict, fmt.Errorf("swap: %w", store.ErrConflict), &store.QuotaError{Msg: "quota 1 GiB exceeded"},
	}
	for _, want := range cases {
		r, f, c := retryStack(t, store.DefaultRetry)
		f.Add(store.FaultRule{Op: "delete", Times: -1, Err: want})
		err := r.Delete(t.Context(), "locks/x")
		if !errors.Is(err, want) {
			t.Errorf("Delete = %v; want %v", err, want)
		}
		if n := f.Ops("delete"); n != 1 {
			t.Errorf("%v: tried %d times, want 1", want, n)
		}
		if n := len(c.Sleeps()); n != 0 {
			t.Errorf("%v: slept %d times, want 0", want, n)
		}
	}
}

// A missing object is asked for once, not thousands of times.
func TestRetryMissingObjectTriedOnce(t *testing.T) {
	r, f, c := retryStack(t, store.DefaultRetry)
	called := false
	err := r.Get(t.Context(), "data/ab/missing", 0, -1, func(io.Reader) error { called = true; return nil })
	if !errors.Is(err, store.ErrNotFound) || called {
		t.Errorf("Get = %v, fn called %v; want ErrNotFound", err, called)
	}
	if _, err := r.Stat(t.Context(), "data/ab/missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat = %v; want ErrNotFound", err)
	}
	if f.Ops("get") != 1 || f.Ops("stat") != 1 || len(c.Sleeps()) != 0 {
		t.Errorf("get tried %d, stat %d times, %d sleeps; want 1, 1, 0", f.Ops("get"), f.Ops("stat"), len(c.Sleeps()))
	}
}

func TestRetryStopsOnCancel(t *testing.T) {
	r, f, c := retryStack(t, store.DefaultRetry)
	f.Add(store.FaultRule{Op: "stat", Times: -1})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	c.onSleep = cancel // canceled while backing off
	_, err := r.Stat(ctx, "config")
	if !errors.Is(err, store.ErrInjected) {
		t.Errorf("Stat = %v; want the last attempt's error", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Stat = %v; want it to say it was canceled", err)
	}
	if n := f.Ops("stat"); n != 1 {
		t.Errorf("tried %d times after cancel, want 1", n)
	}

	// Already canceled: the store's context error is permanent.
	r2, f2, c2 := retryStack(t, store.DefaultRetry)
	err = r2.Put(ctx, "config", bytes.NewReader([]byte("x")), 1)
	if !errors.Is(err, context.Canceled) || f2.Ops("put") != 1 || len(c2.Sleeps()) != 0 {
		t.Errorf("Put with canceled context = %v after %d tries, %d sleeps; want Canceled after 1, 0",
			err, f2.Ops("put"), len(c2.Sleeps()))
	}
}

func TestRetryPutRereadsSource(t *testing.T) {
	r, f, _ := retryStack(t, testPolicy)
	f.Add(store.FaultRule{Op: "put", Times: 1, AfterBytes: 10})
	want := []byte("the whole object, sent again from offset zero")
	if err := r.Put(t.Context(), "index/i1", bytes.NewReader(want), int64(len(want))); err != nil {
		t.Fatal(err)
	}
	got, err := store.ReadAll(t.Context(), r, "index/i1")
	if err != nil || !bytes.Equal(got, want) || f.Ops("put") != 2 {
		t.Errorf("read %q, %v after %d puts; want the object after 2", got, err, f.Ops("put"))
	}
}

func TestRetryGetBrokenMidway(t *testing.T) {
	r, f, _ := retryStack(t, testPolicy)
	want := bytes.Repeat([]byte("0123456789"), 100)
	if err := r.Put(t.Context(), "data/obj", bytes.NewReader(want), int64(len(want))); err != nil {
		t.Fatal(err)
	}
	f.Add(store.FaultRule{Op: "get", Times: 1, AfterBytes: 300})
	got, err := store.ReadAll(t.Context(), r, "data/obj")
	if err != nil || !bytes.Equal(got, want) || f.Ops("get") != 2 {
		t.Errorf("read %d bytes, %v after %d gets; want %d bytes after 2", len(got), err, f.Ops("get"), len(want))
	}
}

func TestRetryAttemptsAtLeastOne(t *testing.T) {
	r, f, c := retryStack(t, store.RetryPolicy{Attempts: 0, Base: time.Millisecond, Max: time.Millisecond})
	f.Add(store.FaultRule{Op: "stat", Times: -1})
	if _, err := r.Stat(t.Context(), "config"); !errors.Is(err, store.ErrInjected) {
		t.Errorf("Stat = %v; want the injected error", err)
	}
	if f.Ops("stat") != 1 || len(c.Sleeps()) != 0 {
		t.Errorf("tried %d times, slept %d; want 1, 0", f.Ops("stat"), len(c.Sleeps()))
	}
}

// breakingList lists part of the store, then fails, the first breaks times.
type breakingList struct {
	store.Store
	after  int
	breaks int
	calls  int
}

func (b *breakingList) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	b.calls++
	if b.calls > b.breaks {
		return b.Store.List(ctx, prefix, fn)
	}
	n := 0
	err := b.Store.List(ctx, prefix, func(i store.Info) error {
		if n == b.after {
			return store.ErrInjected
		}
		n++
		return fn(i)
	})
	return err
}

func TestRetryListRestartPassesNamesOnce(t *testing.T) {
	l := newLocal(t)
	for i := range 6 {
		if err := l.Put(t.Context(), fmt.Sprintf("index/%d", i), bytes.NewReader(nil), 0); err != nil {
			t.Fatal(err)
		}
	}
	b := &breakingList{Store: l, after: 2, breaks: 2}
	c := &fakeClock{}
	r := store.WithRetry(b, testPolicy, c, nil)
	seen := map[string]int{}
	err := r.List(t.Context(), "index/", func(i store.Info) error { seen[i.Name]++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if b.calls != 3 {
		t.Errorf("listed %d times, want 3", b.calls)
	}
	if len(seen) != 6 {
		t.Errorf("saw %d names, want 6: %v", len(seen), seen)
	}
	for name, n := range seen {
		if n != 1 {
			t.Errorf("%s passed %d times", name, n)
		}
	}
}

func TestRetryListFnErrorNotRetried(t *testing.T) {
	r, f, c := retryStack(t, testPolicy)
	if err := r.Put(t.Context(), "index/a", bytes.NewReader(nil), 0); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("caller stops")
	err := r.List(t.Context(), "index/", func(store.Info) error { return stop })
	if err != stop {
		t.Errorf("List = %v; want the fn's error itself", err)
	}
	if f.Ops("list") != 1 || len(c.Sleeps()) != 0 {
		t.Errorf("listed %d times, slept %d; want 1, 0", f.Ops("list"), len(c.Sleeps()))
	}
}

func throttled(wait time.Duration) error {
	return &store.RetryAfterError{Wait: wait, Reason: store.ReasonThrottled, Err: errors.New("429 slow_down: cfa1_do-not-log")}
}

// Throttling does not use up attempts: a 429 ten times in a row still
// succeeds with a policy of two attempts, each wait at least what the server
// asked, plus at most 20% jitter.
func TestRetryThrottledNotCounted(t *testing.T) {
	p := store.RetryPolicy{Attempts: 2, Base: time.Millisecond, Max: time.Millisecond}
	_, f, c := retryStack(t, p)
	var logs bytes.Buffer
	r := store.WithRetry(f, p, c, slog.New(slog.NewTextHandler(&logs, nil)))
	if err := r.Put(t.Context(), "config", bytes.NewReader([]byte("cfg")), 3); err != nil {
		t.Fatal(err)
	}
	f.Add(store.FaultRule{Op: "stat", Times: 10, Err: throttled(3 * time.Second)})
	if _, err := r.Stat(t.Context(), "config"); err != nil {
		t.Fatalf("Stat after 10 throttled replies: %v", err)
	}
	if n := f.Ops("stat"); n != 11 {
		t.Errorf("tried %d times, want 11", n)
	}
	sleeps := c.Sleeps()
	if len(sleeps) != 10 {
		t.Fatalf("slept %d times, want 10", len(sleeps))
	}
	for i, d := range sleeps {
		if d < 3*time.Second || d > 3600*time.Millisecond {
			t.Errorf("sleep %d = %v, want within [3s, 3.6s]", i+1, d)
		}
	}
	if got := strings.Count(logs.String(), "vault asked to slow down"); got != 10 {
		t.Errorf("logged %d slow-down notices, want 10:\n%s", got, logs.String())
	}
	if strings.Contains(logs.String(), "cfa1_") {
		t.Errorf("the log repeats the server's error text:\n%s", logs.String())
	}
	// A transient failure after all that still has its attempts.
	f.Add(store.FaultRule{Op: "stat", Times: 1})
	if _, err := r.Stat(t.Context(), "config"); err != nil {
		t.Errorf("one transient failure after throttling: %v", err)
	}
}

// Throttled waiting is bounded by ThrottleBudget, and one wait by
// MaxThrottleWait.
func TestRetryThrottleBudget(t *testing.T) {
	p := store.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond,
		ThrottleBudget: 10 * time.Minute, MaxThrottleWait: time.Minute}
	r, f, c := retryStack(t, p)
	f.Add(store.FaultRule{Op: "get", Times: -1, Err: throttled(time.Hour)})
	_, err := store.ReadAll(t.Context(), r, "config")
	var ra *store.RetryAfterError
	if !errors.As(err, &ra) || !strings.Contains(err.Error(), "throttling server") {
		t.Fatalf("Get under endless throttling = %v; want the RetryAfterError after the budget", err)
	}
	var total time.Duration
	for _, d := range c.Sleeps() {
		if d != time.Minute {
			t.Errorf("a wait of %v; a 1h Retry-After must be capped at MaxThrottleWait (1m)", d)
		}
		total += d
	}
	if total != 10*time.Minute || f.Ops("get") != 11 {
		t.Errorf("waited %v over %d tries; want 10m over 11", total, f.Ops("get"))
	}
}

// Zero throttle fields mean the defaults, not "no patience at all".
func TestRetryThrottleDefaults(t *testing.T) {
	r, f, c := retryStack(t, store.RetryPolicy{Attempts: 1})
	f.Add(store.FaultRule{Op: "stat", Times: 1, Err: throttled(2 * time.Hour)})
	if _, err := r.Stat(t.Context(), "config"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat = %v; want ErrNotFound after one throttled reply", err)
	}
	if s := c.Sleeps(); len(s) != 1 || s[0] != store.DefaultMaxThrottleWait {
		t.Errorf("sleeps %v; want one of %v", s, store.DefaultMaxThrottleWait)
	}
	if store.DefaultRetry.ThrottleBudget != 30*time.Minute || store.DefaultRetry.MaxThrottleWait != time.Minute {
		t.Errorf("DefaultRetry = %+v", store.DefaultRetry)
	}
}

// A Retry-After that is not throttling (503) counts attempts, and waits at
// least what the server asked and at least the backoff.
func TestRetryAfterUnavailableCounted(t *testing.T) {
	r, f, c := retryStack(t, testPolicy) // 5 attempts, backoff 100-300 ms
	unavailable := &store.RetryAfterError{Wait: 5 * time.Second, Reason: "store_unavailable", Err: errors.New("503")}
	short := &store.RetryAfterError{Wait: time.Millisecond, Reason: "draining", Err: errors.New("503")}
	f.Add(store.FaultRule{Op: "stat", Times: 1, Err: short})
	f.Add(store.FaultRule{Op: "stat", Times: -1, Err: unavailable})
	_, err := r.Stat(t.Context(), "config")
	if !errors.Is(err, unavailable) || !strings.Contains(err.Error(), "giving up after 5 attempts") {
		t.Fatalf("Stat = %v; want the 503 after 5 attempts", err)
	}
	sleeps := c.Sleeps()
	if len(sleeps) != 4 {
		t.Fatalf("slept %v, want 4 sleeps", sleeps)
	}
	if sleeps[0] < testPolicy.Base/2 || sleeps[0] > testPolicy.Base*6/5 {
		t.Errorf("first sleep %v: a 1 ms Retry-After must still wait the backoff (50-120 ms)", sleeps[0])
	}
	for _, d := range sleeps[1:] {
		if d < 5*time.Second || d > 6*time.Second {
			t.Errorf("sleep %v, want within [5s, 6s]", d)
		}
	}
}

func TestRetryErrorTypes(t *testing.T) {
	inner := errors.New("slow down")
	ra := &store.RetryAfterError{Wait: 2 * time.Second, Reason: store.ReasonThrottled, Err: inner}
	if !errors.Is(ra, inner) || store.IsPermanent(ra) {
		t.Errorf("RetryAfterError: Is(inner) %v, permanent %v; want true, false", errors.Is(ra, inner), store.IsPermanent(ra))
	}
	if !strings.Contains(ra.Error(), "throttled") || !strings.Contains(ra.Error(), "2s") {
		t.Errorf("RetryAfterError text %q", ra.Error())
	}
	q := fmt.Errorf("put data/3f: %w", &store.QuotaError{Msg: `tenant "acme": quota 1.00 GiB exceeded`})
	if !errors.Is(q, store.ErrNoSpace) || !store.IsPermanent(q) || errors.Is(q, store.ErrExists) {
		t.Errorf("QuotaError: Is(ErrNoSpace) %v, permanent %v", errors.Is(q, store.ErrNoSpace), store.IsPermanent(q))
	}
	var qe *store.QuotaError
	if !errors.As(q, &qe) || qe.Error() != `tenant "acme": quota 1.00 GiB exceeded` {
		t.Errorf("QuotaError text %v", qe)
	}
}

// With Patience, a store that is away is retried by time, not by attempts:
// an outage shorter than the patience (a restart) is outlasted, a longer
// one gives up once the next wait would end past it, saying so.
func TestRetryPatience(t *testing.T) {
	p := store.RetryPolicy{Attempts: 3, Base: time.Second, Max: 20 * time.Second, Patience: 5 * time.Minute}
	unavailable := &store.RetryAfterError{Wait: 10 * time.Second, Reason: "store_unavailable", Err: errors.New("503")}

	r, f, c := retryStack(t, p)
	if err := r.Put(t.Context(), "config", bytes.NewReader([]byte("cfg")), 3); err != nil {
		t.Fatal(err)
	}
	f.Add(store.FaultRule{Op: "stat", Times: 12}) // minutes of failures
	if _, err := r.Stat(t.Context(), "config"); err != nil {
		t.Fatalf("an outage shorter than the patience: %v", err)
	}
	if w := r.Waited(); w < time.Minute || w > p.Patience {
		t.Fatalf("waited %v in all; want minutes, within the patience", w)
	}
	if got := c.Now().Sub(time.Time{}); got != r.Waited() {
		t.Fatalf("Waited() = %v, the clock slept %v", r.Waited(), got)
	}
	if n := f.Ops("stat"); n != 13 {
		t.Fatalf("tried %d times, want 13", n)
	}

	r, f, c = retryStack(t, p)
	f.Add(store.FaultRule{Op: "stat", Times: -1, Err: unavailable})
	_, err := r.Stat(t.Context(), "config")
	if !errors.Is(err, unavailable) || !strings.Contains(err.Error(), "retry patience 5m0s") {
		t.Fatalf("Stat = %v; want the 503 and the patience named", err)
	}
	var slept time.Duration
	for _, d := range c.Sleeps() {
		slept += d
	}
	if slept > p.Patience || slept < p.Patience-p.Max*6/5 || f.Ops("stat") <= p.Attempts {
		t.Fatalf("gave up after %d attempts and %v of waiting; want close to %v", f.Ops("stat"), slept, p.Patience)
	}
}
