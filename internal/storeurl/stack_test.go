package storeurl_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/storeurl"
)

// TestOpenStack checks the order of the decorators Open assembles: the
// provider the URL names, counting on it, one retry layer on top.
func TestOpenStack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := storeurl.Open(t.Context(), "file://"+dir, storeurl.Options{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Open of a missing directory without Create = %v; want ErrNotFound", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open without Create made %s (%v)", dir, err)
	}
	st, err := storeurl.Open(t.Context(), "file://"+dir, storeurl.Options{Create: true})
	if err != nil {
		t.Fatalf("Open with Create: %v", err)
	}
	defer st.Retry.Close()
	if _, ok := st.Provider.(*store.Local); !ok {
		t.Fatalf("Provider is %T; want *store.Local", st.Provider)
	}
	if st.Retry.Unwrap() != store.Store(st.Counting) || st.Counting.Unwrap() != st.Provider {
		t.Fatalf("stack is %T over %T; want Retry over Counting over the provider", st.Retry.Unwrap(), st.Counting.Unwrap())
	}
	if err := st.Retry.Put(t.Context(), "config", store.Bytes("cfg"), 3); err != nil {
		t.Fatal(err)
	}
	if st.Counting.Requests() != 1 || st.Counting.PutBytes() != 3 {
		t.Errorf("counted %d requests, %d bytes put; want 1, 3", st.Counting.Requests(), st.Counting.PutBytes())
	}
	if got, err := os.ReadFile(filepath.Join(dir, "config")); err != nil || string(got) != "cfg" {
		t.Errorf("the provider holds %q, %v; want \"cfg\"", got, err)
	}
}

// TestDecorateRetry checks that the retry layer sits above the counter
// (each attempt is counted) and retries under the options' policy, clock
// and logger, with store.DefaultRetry for the zero policy.
func TestDecorateRetry(t *testing.T) {
	for _, c := range []struct {
		name     string
		policy   store.RetryPolicy
		attempts int
	}{
		{"given policy", store.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond}, 3},
		{"zero policy", store.RetryPolicy{}, store.DefaultRetry.Attempts},
	} {
		t.Run(c.name, func(t *testing.T) {
			local, err := store.OpenLocal(t.TempDir(), false)
			if err != nil {
				t.Fatal(err)
			}
			faulty := store.NewFaulty(local)
			faulty.Add(store.FaultRule{Op: "put", Times: -1})
			clk := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			var log bytes.Buffer
			st := storeurl.Decorate(faulty, storeurl.Options{Retry: c.policy, Clock: clk, Log: slog.New(slog.NewTextHandler(&log, nil))})
			start := clk.Now()
			if err := st.Retry.Put(t.Context(), "config", store.Bytes("cfg"), 3); !errors.Is(err, store.ErrInjected) {
				t.Fatalf("Put = %v; want the injected error", err)
			}
			if faulty.Ops("put") != c.attempts || st.Counting.Requests() != int64(c.attempts) {
				t.Errorf("%d puts tried, %d counted; want %d of each", faulty.Ops("put"), st.Counting.Requests(), c.attempts)
			}
			if !clk.Now().After(start) || st.Retry.Waited() != clk.Now().Sub(start) {
				t.Errorf("waited %s on the given clock, Waited = %s; want the same, above 0", clk.Now().Sub(start), st.Retry.Waited())
			}
			if log.Len() == 0 {
				t.Error("nothing logged to the given logger")
			}
			if _, err := local.Stat(t.Context(), "config"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("after the failed puts Stat = %v; want ErrNotFound", err)
			}
		})
	}
}

// TestOpenRates: rate caps sit in Base, below the counter, and the
// provider stays undecorated; bad caps are refused.
func TestOpenRates(t *testing.T) {
	dir := t.TempDir()
	st, err := storeurl.Open(t.Context(), "file://"+dir, storeurl.Options{Rates: store.RateLimits{Write: 100, Read: 200}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Provider.Close()
	if _, ok := st.Base.(*store.RateLimit); !ok || st.Counting.Unwrap() != st.Base {
		t.Fatalf("Base is %T under %T; want *store.RateLimit under the counter", st.Base, st.Counting.Unwrap())
	}
	if st.Base.(*store.RateLimit).Unwrap() != st.Provider {
		t.Error("the rate cap does not wrap the provider")
	}
	plain, err := storeurl.Open(t.Context(), "file://"+dir, storeurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Base != plain.Provider {
		t.Errorf("without caps or a lock Base is %T; want the provider", plain.Base)
	}
	if _, err := storeurl.Open(t.Context(), "file://"+dir, storeurl.Options{Rates: store.RateLimits{Write: -1}}); err == nil {
		t.Error("Open with a negative rate succeeded")
	}
}

// TestDecorateBandwidth checks that a bandwidth limit sits between the
// counter and the retry layer and meters put bodies on the options' clock.
func TestDecorateBandwidth(t *testing.T) {
	local, err := store.OpenLocal(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	clk := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	bw := store.NewBandwidth(clk, store.ConstantLimits(store.Limits{Put: 100e3}))
	st := storeurl.Decorate(local, storeurl.Options{Clock: clk, Bandwidth: bw})
	mid, ok := st.Retry.Unwrap().(*store.Bandwidthed)
	if !ok || mid.Unwrap() != store.Store(st.Counting) {
		t.Fatalf("stack is %T over ...; want Retry over Bandwidthed over Counting", st.Retry.Unwrap())
	}
	body := bytes.Repeat([]byte("x"), 300e3)
	start := clk.Now()
	if err := st.Retry.Put(t.Context(), "config", store.Bytes(string(body)), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	if d := clk.Now().Sub(start); d < 2900*time.Millisecond || d > 3100*time.Millisecond {
		t.Errorf("300 kB at 100 kB/s took %v of the clock; want about 3s", d)
	}
}
