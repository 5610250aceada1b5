package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/testutil/testfile"
)

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Size != 4<<30 || cfg.Insert != 32<<20 || cfg.Changed != 0.01 {
		t.Errorf("defaults: size %d insert %d changed %g", cfg.Size, cfg.Insert, cfg.Changed)
	}
	if !slices.Equal(cfg.Tools, allTools) || !slices.Equal(cfg.Targets, allTargets) {
		t.Errorf("defaults: tools %v targets %v", cfg.Tools, cfg.Targets)
	}
	if !slices.Equal(cfg.Scenarios, allScenarios) || cfg.Ext4Size != 4<<30 || cfg.Ext4Data != 320<<20 || cfg.StartupRuns != 3 {
		t.Errorf("defaults: scenarios %v, ext4 %d bytes with %d of files, %d start-up runs",
			cfg.Scenarios, cfg.Ext4Size, cfg.Ext4Data, cfg.StartupRuns)
	}

	cfg, err = parseFlags([]string{"--quick", "--targets", "local"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Size != 512<<20 || cfg.Insert != 4<<20 || !slices.Equal(cfg.Targets, []string{"local"}) {
		t.Errorf("--quick: size %d insert %d targets %v", cfg.Size, cfg.Insert, cfg.Targets)
	}
	if cfg.Ext4Size != 1<<30 || cfg.Ext4Data != 48<<20 {
		t.Errorf("--quick: ext4 %d bytes with %d of files", cfg.Ext4Size, cfg.Ext4Data)
	}
	cfg, err = parseFlags([]string{"--scenarios", "ext4", "--ext4-size", "2GiB", "--ext4-data", "1GiB"}, io.Discard)
	if err != nil || !slices.Equal(cfg.Scenarios, []string{"ext4"}) || cfg.Ext4Size != 2<<30 || cfg.Ext4Data != 1<<30 {
		t.Errorf("--scenarios ext4: %v %d %d, %v", cfg.Scenarios, cfg.Ext4Size, cfg.Ext4Data, err)
	}

	cfg, err = parseFlags([]string{"--quick", "--size", "1GiB", "--insert", "0", "--peers", "kopia"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Size != 1<<30 || cfg.Insert != 0 || !slices.Equal(cfg.Tools, []string{"coffer", "kopia"}) {
		t.Errorf("size %d insert %d tools %v", cfg.Size, cfg.Insert, cfg.Tools)
	}

	for _, bad := range [][]string{
		{"--tools", "restic", "--peers", "kopia"},
		{"--tools", "borg"},
		{"--peers", "coffer"},
		{"--targets", "gcs"},
		{"--size", "1MiB"},
		{"--changed", "1.5"},
		{"--scenarios", "windows"},
		{"--scenarios", ""},
		{"--ext4-data", "3GiB"},
		{"--ext4-data", "1KiB"},
		{"--startup-runs", "0"},
		{"extra"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseBackup(t *testing.T) {
	coffer := []byte(`{"type":"progress","bytes_read":1}
{"type":"summary","snapshot_id":"abc123","bytes_read":4294967296,"store_requests":70}
`)
	m, id, err := cofferDriver{}.parseBackup(coffer)
	if err != nil || id != "abc123" || m["store_requests"] != float64(70) {
		t.Errorf("coffer: %v %q %v", m, id, err)
	}
	if _, _, err := (cofferDriver{}).parseBackup([]byte(`{"type":"progress"}`)); err == nil {
		t.Error("coffer: missing summary accepted")
	}

	restic := []byte(`{"message_type":"status","percent_done":0.5}
{"message_type":"summary","data_added_packed":19424696,"snapshot_id":"bc30e9ed"}
`)
	if m, id, err := (resticDriver{}).parseBackup(restic); err != nil || id != "bc30e9ed" || m["data_added_packed"] != float64(19424696) {
		t.Errorf("restic: %v %q %v", m, id, err)
	}

	kopia := []byte("Snapshotting...\n" + `{"id":"39e8aeea","source":{"path":"/x"},"rootEntry":{"name":"d.img"}}` + "\n")
	m, id, err = kopiaDriver{}.parseBackup(kopia)
	if err != nil || id != "39e8aeea" {
		t.Errorf("kopia: %q %v", id, err)
	}
	if _, ok := m["rootEntry"]; ok {
		t.Error("kopia: rootEntry kept in the summary")
	}
}

func TestParseBytesPerEntry(t *testing.T) {
	out := `goos: linux
BenchmarkIndexMemory-2   	       1	  123456789 ns/op	        37.50 bytes/entry	 1024 B/op
PASS`
	if v, ok := parseBytesPerEntry(out); !ok || v != 37.5 {
		t.Errorf("got %v %v, want 37.5", v, ok)
	}
	if _, ok := parseBytesPerEntry("testing: warning: no tests to run\nPASS\n"); ok {
		t.Error("found a metric in output without the benchmark")
	}
}

func TestSameContent(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 200000) // over 1 MiB
	a := write("a", data)
	b := write("b", data)
	changed := slices.Clone(data)
	changed[len(changed)-1] ^= 1
	c := write("c", changed)
	d := write("d", data[:len(data)-1])
	for _, tc := range []struct {
		x, y string
		want bool
	}{{a, b, true}, {a, c, false}, {a, d, false}, {d, a, false}} {
		got, err := testfile.Equal(tc.x, tc.y)
		if err != nil || got != tc.want {
			t.Errorf("testfile.Equal(%s, %s) = %v, %v; want %v", filepath.Base(tc.x), filepath.Base(tc.y), got, err, tc.want)
		}
	}
	if _, err := testfile.Equal(a, filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file compared")
	}
}

func TestCommand(t *testing.T) {
	dir := t.TempDir()
	env := cleanEnv(dir)
	log := filepath.Join(dir, "log")

	out, u, err := command(context.Background(), time.Minute, dir, env,
		[]string{"/bin/sh", "-c", "echo hello; head -c 20000000 /dev/zero | wc -c >/dev/null"}, log)
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("got %q, %v", out, err)
	}
	if u.wall <= 0 || u.maxRSSKiB <= 0 {
		t.Errorf("usage not measured: %+v", u)
	}
	if data, _ := os.ReadFile(log); !bytes.Contains(data, []byte("hello")) {
		t.Errorf("log lacks the output: %q", data)
	}

	_, _, err = command(context.Background(), time.Minute, dir, env,
		[]string{"/bin/sh", "-c", "echo something broke >&2; exit 3"}, log)
	if err == nil || !strings.Contains(err.Error(), "something broke") {
		t.Errorf("failure not reported with its stderr: %v", err)
	}

	start := time.Now()
	_, _, err = command(context.Background(), 200*time.Millisecond, dir, env,
		[]string{"/bin/sh", "-c", "sleep 30 & sleep 30"}, log)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("timeout not reported: %v", err)
	}
	if time.Since(start) > 15*time.Second {
		t.Errorf("timeout took %v", time.Since(start))
	}
}

func TestCleanEnv(t *testing.T) {
	t.Setenv("RESTIC_PASSWORD", "x")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "y")
	t.Setenv("COFFER_PASSWORD", "z")
	env := cleanEnv("/h")
	for _, kv := range env {
		for _, p := range []string{"RESTIC_", "AWS_", "COFFER_", "KOPIA_"} {
			if strings.HasPrefix(kv, p) {
				t.Errorf("%s leaked", kv)
			}
		}
	}
	if !slices.Contains(env, "HOME=/h") {
		t.Error("HOME not set")
	}
}

// session builds a finished session with the given throughputs (MB/s),
// stored bytes, night-2 increment and peak RSS.
func fakeSession(tool, target string, full, second, restore float64, storedFull, delta, rss int64) *Session {
	return &Session{Tool: tool, Target: target, Scenario: scenarioMix, Steps: []*Step{
		{Name: stepFull, MBps: full, StoredBytes: storedFull, StoredDelta: storedFull, MaxRSSKiB: rss, CPUSeconds: 10,
			Summary: map[string]any{"store_requests": float64(30)}},
		{Name: stepSecond, MBps: second, StoredBytes: storedFull + delta, StoredDelta: delta, MaxRSSKiB: rss, Objects: 20,
			Summary: map[string]any{"store_requests": float64(30)}},
		{Name: stepRestore, MBps: restore, MaxRSSKiB: rss, RestoredAlloc: 1000},
	}}
}

func TestChecks(t *testing.T) {
	bpe := 32.0
	r := &Results{
		Config:                 config{Tools: allTools, Targets: []string{targetLocal}},
		Images:                 Images{Night2Allocated: 1000},
		IndexBytesPerEntry:     &bpe,
		DiskIndexBytesPerEntry: &bpe,
		InstantAccess:          &InstantAccess{FirstByteMs: 2, MBps: 300},
		BandwidthWindows:       []BandwidthWindow{{4, 4.02, 1.005}, {12, 11.98, 0.9985}, {2, 2.01, 1.005}},
		Sessions: []*Session{
			fakeSession(toolCoffer, targetLocal, 250, 150, 300, 1<<30, 10<<20, 50<<10),
			fakeSession(toolRestic, targetLocal, 100, 100, 100, 1<<30, 40<<20, 100<<10),
			{Tool: toolKopia, Target: targetLocal, Scenario: scenarioMix, Error: "missing"},
		},
	}
	r.Checks = checks(r)
	got := map[string]Check{}
	for _, c := range r.Checks {
		got[c.Name] = c
	}
	want := map[string]string{
		"full backup throughput vs restic":                           "PASS", // 2.5x
		"full backup bytes stored vs restic":                         "PASS", // 1.0x
		"second night throughput vs restic (whole image read)":       "FAIL", // 1.5x
		"second night throughput vs restic (changed block tracking)": "n/a",
		"second night bytes stored vs restic":                        "PASS", // 0.25x
		"restore throughput vs restic --sparse":                      "PASS", // 3x
		"restored image sparse":                                      "PASS",
		"peak RSS vs restic":                                         "PASS",
		"store requests per GiB stored":                              "info",
		"index memory per stored chunk, 10M entries (bytes)":         "PASS",
		"index memory per stored chunk, reference disk (bytes)":      "PASS",
	}
	for name, status := range want {
		if got[name].Status != status {
			t.Errorf("%s: %s (value %v), want %s", name, got[name].Status, got[name].Value, status)
		}
	}
	if v := float64(got["store requests per GiB stored"].Value); v < 59 || v > 60 {
		t.Errorf("requests per GiB = %v, want 60/1.01", v)
	}
	noSummary := fakeSession(toolCoffer, targetLocal, 1, 1, 1, 1<<30, 0, 1)
	noSummary.Steps[0].Summary = nil
	if v, _ := requestsPerGiB(noSummary); v != 20 {
		t.Errorf("requests per GiB without store_requests = %v, want 20 objects per GiB", v)
	}
	if len(r.Ratios) != 1 || r.Ratios[0].Peer != toolRestic {
		t.Fatalf("ratios %+v, want coffer vs restic only (kopia is missing)", r.Ratios)
	}

	var out bytes.Buffer
	report(&out, r)
	for _, s := range []string{"coffer vs restic [local]: full throughput 2.50x, stored 1.00x",
		"second night throughput 1.50x, stored 0.25x", "FAIL  local"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}
	if !regexp.MustCompile(`(?m)^ *kopia +missing *$`).MatchString(out.String()) {
		t.Errorf("report does not show kopia as missing:\n%s", out.String())
	}

	// Unknown values are written as null, not rejected by encoding/json.
	path := filepath.Join(t.TempDir(), "bench.json")
	if err := writeJSON(path, r); err != nil {
		t.Fatal(err)
	}
	var back struct{ Checks []struct{ Value *float64 } }
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	nulls := 0
	for _, c := range back.Checks {
		if c.Value == nil {
			nulls++
		}
	}
	if nulls != 1 { // the changed block tracking line
		t.Errorf("%d null values, want 1", nulls)
	}
}

func TestStoredLocal(t *testing.T) {
	dir := t.TempDir()
	for i, n := range []int{10, 200, 3000} {
		sub := filepath.Join(dir, strings.Repeat("d/", i))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, "f"), make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := &bench{}
	size, n, err := b.stored(context.Background(), &Session{repoDir: dir})
	if err != nil || size != 3210 || n != 3 {
		t.Errorf("stored = %d bytes in %d files, %v; want 3210 in 3", size, n, err)
	}
}

func TestParseBenchLine(t *testing.T) {
	out := "goos: linux\nBenchmarkInstantAccess-2   \t       3\t1609735067 ns/op\t 166.94 MB/s\t         1.333 first-byte-ms\nPASS\n"
	m := parseBenchLine(out, "BenchmarkInstantAccess")
	if m["MB/s"] != 166.94 || m["first-byte-ms"] != 1.333 || m["ns/op"] != 1609735067 {
		t.Fatalf("parsed %v", m)
	}
	// A warning on stderr splits the result line.
	split := "BenchmarkInstantAccess-2   \twarning: COFFER_INSECURE_TEST_KDF=1: easy to brute-force\n       3\t1609735067 ns/op\t 166.94 MB/s\t         1.333 first-byte-ms\nPASS\n"
	if m := parseBenchLine(split, "BenchmarkInstantAccess"); m["MB/s"] != 166.94 || m["first-byte-ms"] != 1.333 {
		t.Fatalf("parsed the split result as %v", m)
	}
	if parseBenchLine(out, "BenchmarkOther") != nil {
		t.Fatal("found another benchmark's line")
	}
}
