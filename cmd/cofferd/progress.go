package main

import (
	"context"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/cofferhq/coffer/vault/jobs"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressFor hooks a bar of the bytes a keyless check downloads into opt,
// drawn on stderr when it is a terminal and --json is not given. The
// returned stop removes the bar.
func (g *globals) progressFor(ctx context.Context, label string, opt *jobs.KeylessOptions) (stop func()) {
	if g.json || !isTerminal(g.stderr) {
		return func() {}
	}
	var done atomic.Int64
	var bar atomic.Pointer[progressbar.ProgressBar]
	opt.Read = func(size int64) { done.Add(size) }
	opt.ToRead = func(n int, size int64) {
		bar.Store(progressbar.NewOptions64(size, progressbar.OptionSetWriter(g.stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription(label), progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish()))
	}
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				if b := bar.Load(); b != nil {
					_ = b.Set64(done.Load())
					_ = b.Finish()
				}
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if b := bar.Load(); b != nil {
					_ = b.Set64(done.Load())
				}
			}
		}
	}()
	return func() { close(quit); <-finished }
}
