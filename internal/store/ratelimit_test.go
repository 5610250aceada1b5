package store_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// TestRateLimitWaits: requests over a cap wait (they never fail), writes
// and reads are capped apart, and a wait honours its context.
func TestRateLimitWaits(t *testing.T) {
	local, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	faulty := store.NewFaulty(local) // counts the operations that got through
	rl, err := store.WithRateLimit(faulty, store.RateLimits{Write: 10, Read: 0})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	start := time.Now()
	for i := range 15 {
		if err := rl.Put(ctx, "obj"+string(rune('a'+i)), store.Bytes("x"), 1); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	// A burst of 10, then 5 more at 10/s: about half a second.
	if d := time.Since(start); d < 400*time.Millisecond || d > 5*time.Second {
		t.Errorf("15 puts at 10/s took %s; want about 0.5 s", d)
	}
	// The write cap does not hold reads back: with no write token left,
	// reads still go through at once.
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	for range 50 {
		if _, err := rl.Stat(rctx, "obja"); err != nil {
			t.Fatalf("an uncapped read waited on the write cap: %v", err)
		}
	}
	// A write that cannot get a token before its deadline fails with it,
	// and does not reach the store. At 0.1 writes a second, the one token
	// of the bucket goes to the first delete, and the next would wait 10 s.
	slow, err := store.WithRateLimit(faulty, store.RateLimits{Write: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	deletes := faulty.Ops("delete")
	for range 3 {
		err = slow.Delete(short, "obja")
		if err != nil {
			break
		}
	}
	if !errors.Is(err, context.DeadlineExceeded) || !store.IsPermanent(err) {
		t.Errorf("a capped write past its deadline = %v; want DeadlineExceeded", err)
	}
	if n := faulty.Ops("delete") - deletes; n != 1 {
		t.Errorf("%d deletes went through at a cap of 0.1/s; want exactly 1 (the bucket's token)", n)
	}
}

// TestRateLimitCapabilities: the caps apply to the optional capabilities
// too, which pass through when the store below has them.
func TestRateLimitCapabilities(t *testing.T) {
	local, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := store.WithRateLimit(local, store.RateLimits{Write: 1000, Read: 1000})
	if err != nil {
		t.Fatal(err)
	}
	chain := store.WithRetry(store.NewCounting(rl), store.DefaultRetry, nil, nil)
	sw, ok := store.As[store.Swapper](chain)
	if !ok {
		t.Fatal("As[Swapper] lost through the rate cap")
	}
	if _, err := sw.Swap(t.Context(), "vault/x", []byte("1"), ""); err != nil {
		t.Fatal(err)
	}
	if b, _, err := sw.ReadVersioned(t.Context(), "vault/x", 10); err != nil || string(b) != "1" {
		t.Fatalf("ReadVersioned = %q, %v", b, err)
	}
	if _, ok := store.As[store.DeferredPutter](rl); !ok {
		t.Error("As[DeferredPutter] lost through the rate cap")
	}
	if _, ok := store.As[store.TempCleaner](rl); !ok {
		t.Error("As[TempCleaner] lost through the rate cap")
	}
	if _, ok := store.As[store.Locker](rl); ok {
		t.Error("As[Locker] found over a local directory")
	}
	for _, bad := range []store.RateLimits{{Write: -1}, {Read: math.NaN()}, {Read: math.Inf(1)}} {
		if _, err := store.WithRateLimit(local, bad); err == nil {
			t.Errorf("WithRateLimit(%+v) = nil error", bad)
		}
	}
}
