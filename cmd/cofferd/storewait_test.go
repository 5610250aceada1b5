package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// serve keeps retrying a store that is not reachable yet, but not one that
// refuses for good, and not past its wait.
func TestRetryOpen(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	unready := errors.New("XMinioServerNotInitialized (HTTP 503): Server not initialized yet")
	ok, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	got, err := retryOpen(context.Background(), 10*time.Second, time.Millisecond, log, func() (store.Store, error) {
		if calls++; calls < 3 {
			return nil, unready
		}
		return ok, nil
	})
	if err != nil || got != ok || calls != 3 {
		t.Fatalf("transient twice: %v after %d calls", err, calls)
	}

	calls = 0
	denied := fmt.Errorf("checking bucket: %w", store.ErrDenied)
	if _, err := retryOpen(context.Background(), 10*time.Second, time.Millisecond, log, func() (store.Store, error) {
		calls++
		return nil, denied
	}); !errors.Is(err, store.ErrDenied) || calls != 1 {
		t.Fatalf("permanent: %v after %d calls", err, calls)
	}

	calls = 0
	start := time.Now()
	_, err = retryOpen(context.Background(), 50*time.Millisecond, 5*time.Millisecond, log, func() (store.Store, error) {
		calls++
		return nil, unready
	})
	if !errors.Is(err, unready) || !strings.Contains(err.Error(), "attempts") || calls < 2 || time.Since(start) > 5*time.Second {
		t.Fatalf("wait over: %v after %d calls", err, calls)
	}

	calls = 0
	if _, err := retryOpen(context.Background(), 0, time.Millisecond, log, func() (store.Store, error) {
		calls++
		return nil, unready
	}); !errors.Is(err, unready) || calls != 1 {
		t.Fatalf("no wait: %v after %d calls", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := retryOpen(ctx, time.Minute, time.Second, log, func() (store.Store, error) { return nil, unready }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
