package main

import (
	"context"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// writerIsTerminal reports whether w is a terminal.
func writerIsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// checkProgress is a bar of the bytes a check downloads, drawn on stderr
// when it is a terminal and --json is not given. Total sets its size once
// known, Done counts bytes as they are checked (from any goroutine), and
// Stop removes it. Without a terminal all three do nothing.
type checkProgress struct {
	Total func(count int, size int64)
	Done  func(size int64)
	Stop  func()
}

func (g *globals) newCheckProgress(ctx context.Context, label string) checkProgress {
	if g.json || !writerIsTerminal(g.stderr) {
		return checkProgress{Total: func(int, int64) {}, Done: func(int64) {}, Stop: func() {}}
	}
	var done atomic.Int64
	var bar atomic.Pointer[progressbar.ProgressBar]
	p := checkProgress{Done: func(size int64) { done.Add(size) }}
	p.Total = func(_ int, size int64) {
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
	p.Stop = func() { close(quit); <-finished }
	return p
}
