package main

import (
	"context"
	"fmt"
	"math"
	"strings"
)

// BandwidthWindow is one window of BenchmarkBandwidthWindows (in
// ./internal/store): the upload limit in force and the rate achieved.
type BandwidthWindow struct {
	LimitMBps float64 `json:"limit_mbps"`
	MBps      float64 `json:"mbps"`
	Ratio     float64 `json:"ratio"`
}

// bandwidthTolerance is how far from its limit a window's rate may be.
const bandwidthTolerance = 0.10

// runBandwidthWindows runs the benchmark once and reads its windows.
func runBandwidthWindows(ctx context.Context, root string) []BandwidthWindow {
	return bandwidthWindows(goBenchMetrics(ctx, root, "./internal/store", "BenchmarkBandwidthWindows", "1x"))
}

// bandwidthWindows reads the windows w1, w2, … from the benchmark's
// metrics; nil when there are none or one is incomplete.
func bandwidthWindows(m map[string]float64) []BandwidthWindow {
	var ws []BandwidthWindow
	for i := 1; ; i++ {
		p := fmt.Sprintf("w%d-", i)
		rate, ok1 := m[p+"MB/s"]
		limit, ok2 := m[p+"limit-MB/s"]
		ratio, ok3 := m[p+"ratio"]
		if !ok1 && !ok2 && !ok3 {
			return ws
		}
		if !ok1 || !ok2 || !ok3 || limit <= 0 {
			return nil
		}
		ws = append(ws, BandwidthWindow{LimitMBps: limit, MBps: rate, Ratio: ratio})
	}
}

// bandwidthChecks: the rate in every window within 10% of its limit.
func bandwidthChecks(r *Results) []Check {
	c := Check{Name: "bandwidth within 10% of the limit in each window", Value: num(math.NaN()), Limit: "|ratio - 1| <= 0.10",
		Status: "n/a", Note: "BenchmarkBandwidthWindows in ./internal/store (4 uploaders, 3 windows of 3 s)"}
	if len(r.BandwidthWindows) < 3 {
		return []Check{c}
	}
	worst, parts := 0.0, []string{}
	for _, w := range r.BandwidthWindows {
		worst = max(worst, math.Abs(w.Ratio-1))
		parts = append(parts, fmt.Sprintf("%.2f of %.2f MB/s", w.MBps, w.LimitMBps))
	}
	c.Value, c.Status = num(worst), passFail(worst <= bandwidthTolerance)
	c.Note += "; value: the largest |ratio - 1|; " + strings.Join(parts, ", ")
	return []Check{c}
}
