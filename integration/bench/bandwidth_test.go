package main

import (
	"math"
	"testing"
)

func TestBandwidthWindowsCheck(t *testing.T) {
	out := "BenchmarkBandwidthWindows-2   \t       1\t9001169248 ns/op\t         4.020 w1-MB/s\t         4.000 w1-limit-MB/s\t         1.005 w1-ratio\t        11.98 w2-MB/s\t        12.00 w2-limit-MB/s\t         0.9985 w2-ratio\t         2.015 w3-MB/s\t         2.000 w3-limit-MB/s\t         1.008 w3-ratio\nPASS\n"
	ws := bandwidthWindows(parseBenchLine(out, "BenchmarkBandwidthWindows"))
	if len(ws) != 3 || ws[1] != (BandwidthWindow{LimitMBps: 12, MBps: 11.98, Ratio: 0.9985}) {
		t.Fatalf("windows %+v", ws)
	}
	r := &Results{BandwidthWindows: ws}
	if c := bandwidthChecks(r)[0]; c.Status != "PASS" || math.Abs(float64(c.Value)-0.008) > 1e-9 {
		t.Errorf("check %+v, want PASS with 0.008", c)
	}
	r.BandwidthWindows[2].Ratio = 1.12
	if c := bandwidthChecks(r)[0]; c.Status != "FAIL" {
		t.Errorf("a window 12%% over its limit: %+v, want FAIL", c)
	}
	r.BandwidthWindows[2].Ratio = 0.85
	if c := bandwidthChecks(r)[0]; c.Status != "FAIL" {
		t.Errorf("a window 15%% under its limit: %+v, want FAIL", c)
	}
	if c := bandwidthChecks(&Results{})[0]; c.Status != "n/a" || !math.IsNaN(float64(c.Value)) {
		t.Errorf("no benchmark: %+v, want n/a", c)
	}
	if ws := bandwidthWindows(map[string]float64{"w1-MB/s": 1, "w1-ratio": 1}); ws != nil {
		t.Errorf("a window without its limit: %+v, want nil", ws)
	}
}
