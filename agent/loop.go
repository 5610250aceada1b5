package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/runrecord"
)

// RetryPolicy is how a failed run is tried again: Attempts tries in all,
// waiting Initial, then twice that, … up to Max, each wait shortened by a
// random part of up to a half (jitter), so agents that failed together
// do not retry together.
type RetryPolicy struct {
	Attempts     int
	Initial, Max time.Duration
}

// Backoff is the wait before try attempt+1 (attempt counts from 1), for a
// random draw r in [0, 1).
func (p RetryPolicy) Backoff(attempt int, r float64) time.Duration {
	d := p.Initial
	for i := 1; i < attempt && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	return d - time.Duration(r*float64(d)/2)
}

// Outcome is what a run did.
type Outcome struct {
	Bytes     int64    // bytes stored new in the repository
	Snapshots []string // IDs of the snapshots made
	// Partial is set when some sources failed and others were saved: the
	// run is not tried again (the saved ones would only be saved again),
	// and the record says partial.
	Partial bool
}

// RunFunc does one run of the backups; it is the caller's (cmd/coffer),
// made of the backup code. When ctx ends it stops soon: the pack being
// uploaded finishes or is abandoned, and the next run resumes (the
// uploader's run marks). An error wrapped with Permanent is not retried.
type RunFunc func(ctx context.Context) (Outcome, error)

// permanentError is an error a retry cannot fix (a config mistake).
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// Permanent marks err as one no retry fixes.
func Permanent(err error) error { return permanentError{err} }

// Agent runs RunFunc on a plan's schedule.
type Agent struct {
	Plan  *Plan
	Run   RunFunc
	Clock clock.Clock // nil: the real one
	Log   *slog.Logger
	// Record, when set, is given every run's record (history, and the
	// repository). Its error is logged, never fatal.
	Record func(ctx context.Context, r Record) error
	// Last is when the last run was scheduled (from the history): a run
	// due since then, missed while the agent was not running, runs at once.
	Last time.Time
	// Version is the agent's version, for the records.
	Version string
	// Rand draws the jitter in [0, 1); nil: math/rand.
	Rand func() float64

	running sync.Mutex
}

// MaxNap is the longest the loop sleeps at once before it looks at the
// clock again: a machine that was asleep at a run's time notices on wake.
const MaxNap = time.Minute

// LateAfter is how late a run may start and still count as on time; a
// later one is logged as missed (the machine was asleep or off).
const LateAfter = 2 * time.Minute

// Serve runs the schedule until ctx ends, and then returns nil once the
// run in flight stopped (a clean stop).
func (a *Agent) Serve(ctx context.Context) error {
	if a.Plan == nil || a.Run == nil {
		return errors.New("agent: a plan and a run function are needed")
	}
	c := clock.Or(a.Clock)
	last := a.Last
	if last.IsZero() {
		last = c.Now()
	}
	for {
		next := a.Plan.Next(last)
		if next.IsZero() {
			a.log().Warn("the schedule has no further run; stopping")
			return nil
		}
		a.log().Info("next run", "at", next.Format(time.RFC3339))
		if err := sleepUntil(ctx, c, next); err != nil {
			a.log().Info("stopping: no run in flight")
			return nil
		}
		if late := c.Now().Sub(next); late > LateAfter {
			a.log().Warn("the run was missed (the machine was asleep or the agent not running): running it now, once",
				"scheduled", next.Format(time.RFC3339), "late", late.Round(time.Second).String())
		}
		a.RunNow(ctx, next)
		if ctx.Err() != nil {
			a.log().Info("stopped cleanly; the next run resumes where this one stopped")
			return nil
		}
		// The next run is the first one after now: runs missed while this
		// one ran, or the machine slept, are not made up one by one.
		last = c.Now()
	}
}

// sleepUntil waits until t on c, in naps of at most MaxNap.
func sleepUntil(ctx context.Context, c clock.Clock, t time.Time) error {
	for {
		now := c.Now()
		if !now.Before(t) {
			return nil
		}
		if err := c.Sleep(ctx, min(t.Sub(now), MaxNap)); err != nil {
			return err
		}
	}
}

// ErrBusy is returned by RunNow when a run is already going.
var ErrBusy = errors.New("a run is already going; this one was not started")

// RunNow does one run scheduled at scheduled, with retries, and records
// it. It never runs two at once.
func (a *Agent) RunNow(ctx context.Context, scheduled time.Time) (Record, error) {
	if !a.running.TryLock() {
		return Record{}, ErrBusy
	}
	defer a.running.Unlock()
	c := clock.Or(a.Clock)
	rec := Record{Version: runrecord.Version, AgentVersion: a.Version, Scheduled: scheduled.UTC(), Started: c.Now().UTC()}
	out, err := a.tries(ctx, &rec)
	rec.Finished = c.Now().UTC()
	finish(&rec, out, err, ctx.Err() != nil)
	if next := a.Plan.Next(c.Now()); !next.IsZero() {
		rec.NextRun = next.UTC()
	}
	a.log().Info("run finished", "result", rec.Result, "attempts", rec.Attempts, "snapshots", len(rec.Snapshots), "bytes", rec.Bytes)
	if a.Record != nil {
		if err := a.Record(context.WithoutCancel(ctx), rec); err != nil {
			a.log().Warn("the run's record was not kept", "error", err.Error())
		}
	}
	return rec, err
}

// tries runs RunFunc until it succeeds, fails for good, or the attempts
// are used up.
func (a *Agent) tries(ctx context.Context, rec *Record) (Outcome, error) {
	c := clock.Or(a.Clock)
	policy := a.Plan.Retry()
	for attempt := 1; ; attempt++ {
		rec.Attempts = attempt
		out, err := a.Run(ctx)
		if err == nil || out.Partial || ctx.Err() != nil || errors.As(err, new(permanentError)) || attempt >= policy.Attempts {
			return out, err
		}
		wait := policy.Backoff(attempt, a.rand())
		a.log().Warn("the run failed; trying again", "attempt", attempt, "of", policy.Attempts, "in", wait.Round(time.Second).String(), "error", err.Error())
		if err := c.Sleep(ctx, wait); err != nil {
			return out, fmt.Errorf("stopped while waiting to try again: %w", err)
		}
	}
}

func (a *Agent) rand() float64 {
	if a.Rand != nil {
		return a.Rand()
	}
	return rand.Float64()
}

func (a *Agent) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}
