package clock

import (
	"context"
	"time"
)

// Clock tells the time and waits.
type Clock interface {
	Now() time.Time
	// Sleep waits d, or until ctx ends (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

type real struct{}

func (real) Now() time.Time { return time.Now() }

func (real) Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Real is the wall clock.
var Real Clock = real{}

// Or returns c, or Real when c is nil.
func Or(c Clock) Clock {
	if c == nil {
		return Real
	}
	return c
}

// Stopwatch measures how long work took, on the monotonic clock. It is for
// reports (durations, rates, waits), never for decisions, so it is not part
// of Clock and tests do not move it.
type Stopwatch struct{ start time.Time }

// Start starts a stopwatch.
func Start() Stopwatch { return Stopwatch{start: time.Now()} }

// Elapsed is the time since Start.
func (s Stopwatch) Elapsed() time.Duration { return time.Since(s.start) }
