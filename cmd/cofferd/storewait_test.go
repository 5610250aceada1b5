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
	for wait, want := range map[time.Duration]int{0: 1, time.Nanosecond: 2, time.Second: 3, 5 * time.Second: 4, 6 * time.Second: 4, time.Minute: 22} {
		if got := storeWaitPolicy(wait).Attempts; got != want {
			t.Errorf("--store-wait %v: %d attempts, want %d", wait, got, want)
		}
	}
	// Any positive wait retries, and the retries take about the wait.
	for _, wait := range []time.Duration{time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second, 6 * time.Second, 10 * time.Minute} {
		p := storeWaitPolicy(wait)
		var longest time.Duration
		for i, d := 1, p.Base; i < p.Attempts; i, d = i+1, min(2*d, p.Max) {
			longest += d
		}
		if p.Attempts < 2 || longest < wait/2 || longest > 2*wait {
			t.Errorf("--store-wait %v: %d attempts of at most %v in all", wait, p.Attempts, longest)
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
	}{{0, 1}, {time.Second, 3}} {
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
