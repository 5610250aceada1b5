// Command coffer is the Coffer agent: it backs up disk images into an
// encrypted, deduplicated repository and restores them. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	// The heap is mostly pack and fetch buffers the pipelines reuse, which
	// the collector need not scan; a low target keeps the garbage around
	// them (per-message cipher state, HTTP bodies) from doubling peak memory,
	// at no measurable CPU cost. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(25)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
