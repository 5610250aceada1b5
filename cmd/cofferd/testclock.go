package main

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
)

// fileClock is the wall clock moved forward by the duration written in a
// file, read at every reading (hidden --clock-file): end-to-end tests move
// the time of several cofferd processes at once, to cross garbage
// collection's grace and the sessions' lifetimes without waiting a day.
type fileClock struct{ path string }

func (c fileClock) offset() time.Duration {
	b, err := os.ReadFile(c.path)
	if err != nil {
		return 0
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return d
}

func (c fileClock) Now() time.Time { return clock.Real.Now().Add(c.offset()) }

func (c fileClock) Sleep(ctx context.Context, d time.Duration) error { return clock.Real.Sleep(ctx, d) }
