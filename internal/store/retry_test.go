package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
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
