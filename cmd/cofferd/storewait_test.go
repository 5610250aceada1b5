package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
)

// serve keeps retrying a store that is not reachable yet, for about
// --store-wait, through the shared retry layer; other commands try once.
func TestStoreWait(t *testing.T) {
	for wait, want := range map[time.Duration]int{0: 1, 5 * time.Second: 1, 6 * time.Second: 2, time.Minute: 20} {
		if got := storeWaitPolicy(wait).Attempts; got != want {
			t.Errorf("--store-wait %v: %d attempts, want %d", wait, got, want)
		}
	}
	// A port nothing listens on: connection refused, a transient error.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testtesttest")
	for _, c := range []struct {
		wait     time.Duration
		attempts int
	}{{0, 1}, {6 * time.Second, 2}} {
		var logs bytes.Buffer
		g := &globals{storeURL: fmt.Sprintf("s3://%s/bucket?tls=false", addr), clock: clock.Real,
			log: slog.New(slog.NewTextHandler(&logs, nil))}
		_, _, _, err := g.openStateWait(context.Background(), c.wait)
		if err == nil || !strings.Contains(err.Error(), "opening the vault store") {
			t.Fatalf("wait %v: err = %v", c.wait, err)
		}
		retries := strings.Count(logs.String(), "retrying")
		if retries != c.attempts-1 {
			t.Errorf("wait %v: %d retries logged, want %d:\n%s", c.wait, retries, c.attempts-1, logs.String())
		}
		if c.attempts > 1 && !strings.Contains(err.Error(), fmt.Sprintf("giving up after %d attempts", c.attempts)) {
			t.Errorf("wait %v: err = %v", c.wait, err)
		}
	}
}
