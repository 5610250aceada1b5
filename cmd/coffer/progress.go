package main

import (
	"context"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/cofferhq/coffer/internal/clock"
)

// progressSample is one look at a running operation: how many of its total
// bytes are done, the bar's label, and the fields of a JSON progress line.
type progressSample struct {
	done int64
	desc string
	json map[string]any
}

// showProgress draws a bar of total bytes on a terminal, or prints a JSON
// progress line a second with --json, from sample, until the returned stop
// is called. With --quiet, or without --json on something other than a
// terminal, it shows nothing.
func (g *globals) showProgress(ctx context.Context, label string, total int64, sample func() progressSample) (stop func()) {
	if g.quiet || (!g.json && !isTerminal(g.stderr)) {
		return func() {}
	}
	var bar *progressbar.ProgressBar
	if !g.json {
		bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(g.stderr),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription(label),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	done, finished := make(chan struct{}), make(chan struct{})
	start := clock.Start()
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		if bar != nil {
			t.Reset(250 * time.Millisecond)
		}
		defer t.Stop()
		for {
			select {
			case <-done:
				if bar != nil {
					_ = bar.Finish()
				}
				return
			case <-ctx.Done():
				return
			case <-t.C:
				s := sample()
				if bar != nil {
					bar.Describe(s.desc)
					_ = bar.Set64(s.done)
					continue
				}
				line := map[string]any{"type": "progress", "seconds": start.Elapsed().Seconds(), "size": total, "done": s.done}
				for k, v := range s.json {
					line[k] = v
				}
				g.printJSON(line)
			}
		}
	}()
	return func() { close(done); <-finished }
}
