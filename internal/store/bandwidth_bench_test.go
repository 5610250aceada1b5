package store_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/store"
)

// sinkStore takes puts and drops their bytes, counting them by the window
// they arrive in; nothing else is called.
type sinkStore struct {
	store.Store
	start  time.Time
	window time.Duration
	bytes  []atomic.Int64
}

func (s *sinkStore) Put(_ context.Context, _ string, r io.ReaderAt, size int64) error {
	buf := make([]byte, 16<<10) // small reads: bytes are counted in the window they pass in
	for off := int64(0); off < size; {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		if w := int(time.Since(s.start) / s.window); w < len(s.bytes) {
			s.bytes[w].Add(int64(n))
		}
		off += int64(n)
		if err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

func (s *sinkStore) Location() string { return "sink" }

// BenchmarkBandwidthWindows pushes data through the bandwidth decorator
// from four uploaders at once over a schedule of three windows with
// different limits, and reports per window the rate achieved and its
// ratio to the limit (integration/bench checks each is within 10%). The
// schedule keys the limit on the time since the start, as Windows keys it
// on the time of day, on the real clock.
func BenchmarkBandwidthWindows(b *testing.B) {
	limits := []int64{4e6, 12e6, 2e6}
	const window = 3 * time.Second
	const uploaders = 4
	totals := make([]int64, len(limits))
	for range b.N {
		start := time.Now()
		sink := &sinkStore{start: start, window: window, bytes: make([]atomic.Int64, len(limits))}
		bw := store.NewBandwidth(clock.Real, func(t time.Time) store.Limits {
			w := min(int(t.Sub(start)/window), len(limits)-1)
			return store.Limits{Put: limits[w]}
		})
		s := store.WithBandwidth(sink, bw)
		ctx, cancel := context.WithTimeout(context.Background(), window*time.Duration(len(limits)))
		body := store.Bytes(make([]byte, 1<<20))
		var wg sync.WaitGroup
		for range uploaders {
			wg.Go(func() {
				for ctx.Err() == nil {
					_ = s.Put(ctx, "data/00/x", body, int64(len(body)))
				}
			})
		}
		wg.Wait()
		cancel()
		for i := range limits {
			totals[i] += sink.bytes[i].Load()
		}
	}
	for i, l := range limits {
		rate := float64(totals[i]) / float64(b.N) / window.Seconds()
		b.ReportMetric(rate/1e6, fmt.Sprintf("w%d-MB/s", i+1))
		b.ReportMetric(float64(l)/1e6, fmt.Sprintf("w%d-limit-MB/s", i+1))
		b.ReportMetric(rate/float64(l), fmt.Sprintf("w%d-ratio", i+1))
	}
}
