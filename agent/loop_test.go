package agent

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
)

var monday = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

const snap = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// harness runs an agent on a fake clock and collects its records.
type harness struct {
	mu      sync.Mutex
	records []Record
	starts  []time.Time
}

func (h *harness) record(_ context.Context, r Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}

func newAgent(t *testing.T, cfg string, c *clocktest.Clock, run RunFunc, h *harness) *Agent {
	t.Helper()
	return &Agent{Plan: mustPlan(t, cfg), Run: run, Clock: c, Record: h.record, Version: "test", Rand: func() float64 { return 0 }}
}

const nightly = "schedule: {cron: '0 2 * * *'}\nimages: [{path: /x}]\nretries: {attempts: 3, initial: 1m, max: 3m}\n"

// Runs start at their scheduled times, one after another, and the agent
// stops cleanly when its context ends.
func TestServeRunsOnSchedule(t *testing.T) {
	c := clocktest.New(monday)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{}
	run := func(context.Context) (Outcome, error) {
		h.starts = append(h.starts, c.Now())
		c.Advance(20 * time.Minute)
		if len(h.starts) == 3 {
			cancel()
		}
		return Outcome{Bytes: 10, Snapshots: []string{snap}}, nil
	}
	a := newAgent(t, nightly, c, run, h)
	if err := a.Serve(ctx); err != nil {
		t.Fatalf("Serve after a stop = %v, want nil (a clean stop)", err)
	}
	for i, s := range h.starts {
		if want := time.Date(2026, 3, 3+i, 2, 0, 0, 0, time.UTC); !s.Equal(want) {
			t.Errorf("run %d started at %s, want %s", i, s, want)
		}
	}
	if len(h.records) != 3 || h.records[0].Result != ResultOK || h.records[2].Result != ResultOK || h.records[0].Bytes != 10 ||
		!h.records[0].NextRun.Equal(time.Date(2026, 3, 4, 2, 0, 0, 0, time.UTC)) {
		t.Fatalf("records %+v", h.records)
	}
}

// sleepyClock is a fake clock whose machine sleeps through a stretch: the
// first Sleep that reaches past at jumps on to wake.
type sleepyClock struct {
	*clocktest.Clock
	at, wake time.Time
	slept    bool
}

func (s *sleepyClock) Sleep(ctx context.Context, d time.Duration) error {
	if !s.slept && !s.Now().Add(d).Before(s.at) {
		s.slept = true
		s.Advance(s.wake.Sub(s.Now()))
		return ctx.Err()
	}
	return s.Clock.Sleep(ctx, d)
}

// A machine asleep over three nightly runs runs once on wake, then on the
// schedule again.
func TestServeMissedRunOnceOnWake(t *testing.T) {
	fc := clocktest.New(monday)
	wake := time.Date(2026, 3, 5, 9, 30, 0, 0, time.UTC)
	c := &sleepyClock{Clock: fc, at: time.Date(2026, 3, 3, 1, 0, 0, 0, time.UTC), wake: wake}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{}
	run := func(context.Context) (Outcome, error) {
		h.starts = append(h.starts, c.Now())
		if len(h.starts) == 2 {
			cancel()
		}
		return Outcome{}, nil
	}
	a := &Agent{Plan: mustPlan(t, nightly), Run: run, Clock: c, Record: h.record}
	if err := a.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	if len(h.starts) != 2 || h.starts[0].Sub(wake) > MaxNap || h.starts[0].Before(wake) {
		t.Fatalf("runs started at %v; want the first within a nap of the wake at %s", h.starts, wake)
	}
	if want := time.Date(2026, 3, 6, 2, 0, 0, 0, time.UTC); !h.starts[1].Equal(want) {
		t.Errorf("the run after the missed one started at %s, want %s", h.starts[1], want)
	}
	if !h.records[0].Scheduled.Equal(time.Date(2026, 3, 3, 2, 0, 0, 0, time.UTC)) {
		t.Errorf("the missed run's record says it was scheduled at %s", h.records[0].Scheduled)
	}
}

// A run due while the agent was not running (Last is older than the
// previous scheduled time) runs at once on start.
func TestServeRunsMissedOnStart(t *testing.T) {
	c := clocktest.New(monday)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{}
	run := func(context.Context) (Outcome, error) {
		h.starts = append(h.starts, c.Now())
		cancel()
		return Outcome{}, nil
	}
	a := newAgent(t, nightly, c, run, h)
	a.Last = monday.Add(-48 * time.Hour)
	if err := a.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	if len(h.starts) != 1 || !h.starts[0].Equal(monday) {
		t.Fatalf("runs at %v; want one at once (%s)", h.starts, monday)
	}
}

// A failing run is tried again after backoffs that double up to the
// maximum, then recorded as failed with its sanitized error.
func TestRetriesWithBackoff(t *testing.T) {
	c := clocktest.New(monday)
	h := &harness{}
	var tries []time.Time
	run := func(context.Context) (Outcome, error) {
		tries = append(tries, c.Now())
		return Outcome{}, errors.New("store away\n\x1b[31mred")
	}
	a := newAgent(t, "schedule: {cron: '@daily'}\nimages: [{path: /x}]\nretries: {attempts: 4, initial: 1m, max: 3m}\n", c, run, h)
	rec, err := a.RunNow(context.Background(), monday)
	if err == nil || rec.Result != ResultFailed || rec.Attempts != 4 {
		t.Fatalf("RunNow = %+v, %v; want failed after 4 attempts", rec, err)
	}
	want := []time.Duration{0, time.Minute, 3 * time.Minute, 6 * time.Minute}
	for i, tr := range tries {
		if got := tr.Sub(monday); got != want[i] {
			t.Errorf("try %d at +%s, want +%s", i+1, got, want[i])
		}
	}
	if rec.Error != `store away\x0a\x1b[31mred` {
		t.Errorf("record error %q: want one line with the escapes shown", rec.Error)
	}
	if _, err := rec.Marshal(); err != nil {
		t.Errorf("a failed run's record does not marshal: %v", err)
	}
}

func TestBackoffJitter(t *testing.T) {
	p := RetryPolicy{Attempts: 5, Initial: time.Minute, Max: 10 * time.Minute}
	if d := p.Backoff(1, 0.999); d <= 30*time.Second || d > time.Minute {
		t.Errorf("jittered first wait %s, want in (30s, 1m]", d)
	}
	if d := p.Backoff(20, 0); d != 10*time.Minute {
		t.Errorf("20th wait %s, want the 10m maximum", d)
	}
}

// A permanent error and a partial run are not retried.
func TestNoRetry(t *testing.T) {
	for name, res := range map[string]struct {
		out  Outcome
		err  error
		want string
	}{
		"permanent": {Outcome{}, Permanent(errors.New("bad config")), ResultFailed},
		"partial":   {Outcome{Partial: true, Snapshots: []string{snap}}, errors.New("1 of 2 VMs failed"), ResultPartial},
	} {
		c := clocktest.New(monday)
		n := 0
		a := newAgent(t, nightly, c, func(context.Context) (Outcome, error) { n++; return res.out, res.err }, &harness{})
		rec, _ := a.RunNow(context.Background(), monday)
		if n != 1 || rec.Result != res.want {
			t.Errorf("%s: %d tries, result %s; want 1 try, %s", name, n, rec.Result, res.want)
		}
	}
}

// SIGTERM during a run: the run sees its context end, returns, and the
// agent records it interrupted and stops cleanly without retrying.
func TestStopDuringRun(t *testing.T) {
	c := clocktest.New(monday)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{}
	n := 0
	run := func(ctx context.Context) (Outcome, error) {
		n++
		cancel()
		<-ctx.Done()
		return Outcome{}, ctx.Err()
	}
	a := newAgent(t, nightly, c, run, h)
	if err := a.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	if n != 1 || len(h.records) != 1 || h.records[0].Result != ResultInterrupted {
		t.Fatalf("%d tries, records %+v; want one interrupted run", n, h.records)
	}
}

// A run is never started while another is going.
func TestRunNowNotTwice(t *testing.T) {
	c := clocktest.New(monday)
	started, release := make(chan struct{}), make(chan struct{})
	a := newAgent(t, nightly, c, func(context.Context) (Outcome, error) {
		close(started)
		<-release
		return Outcome{}, nil
	}, &harness{})
	done := make(chan error)
	go func() { _, err := a.RunNow(context.Background(), monday); done <- err }()
	<-started
	if _, err := a.RunNow(context.Background(), monday); !errors.Is(err, ErrBusy) {
		t.Errorf("a second run while one is going: %v, want ErrBusy", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
