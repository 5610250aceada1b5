package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
)

func TestParseFlagsXen(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil || cfg.XenSize != 16<<30 {
		t.Errorf("default --xen-size %d, %v; want 16GiB", cfg.XenSize, err)
	}
	cfg, err = parseFlags([]string{"--quick"}, io.Discard)
	if err != nil || cfg.XenSize != 2<<30 {
		t.Errorf("--quick --xen-size %d, %v; want 2GiB", cfg.XenSize, err)
	}
	cfg, err = parseFlags([]string{"--quick", "--scenarios", "xen", "--xen-size", "64MiB"}, io.Discard)
	if err != nil || cfg.XenSize != 64<<20 || len(cfg.Scenarios) != 1 || cfg.Scenarios[0] != scenarioXen {
		t.Errorf("--xen-size 64MiB --scenarios xen: %d %v, %v", cfg.XenSize, cfg.Scenarios, err)
	}
	for _, bad := range []string{"1MiB", "16777217", "20000000"} {
		if _, err := parseFlags([]string{"--xen-size", bad}, io.Discard); err == nil {
			t.Errorf("--xen-size %s accepted", bad)
		}
	}
}

// xenSummary is a summary line of coffer backup --xen --json for one disk.
const xenSummary = `{"type":"summary","vms":[{"name":"bench","uuid":"u","snapshot_id":"0123abcd","ok":true,"warnings":[],` +
	`"duration_seconds":0.3,"disks":[{"userdevice":"0","vdi":"v","size":67108864,"read":"changed","changed_blocks":10,` +
	`"bytes_read":655360,"bytes_fetched":3565158,"bytes_new":1992294,"nbd_reconnects":0}]}],"failed":0,"bytes_stored_new":1,` +
	`"packs_new":1,"store_requests":5,"duration_seconds":0.3}`

func TestParseXenSummary(t *testing.T) {
	out := `{"type":"event","vm":"bench","message":"snapshot taken"}` + "\n" + xenSummary + "\n"
	m, d, err := parseXenSummary([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := XenDisk{Read: "changed", Size: 64 << 20, ChangedBlocks: 10, BytesRead: 655360, BytesFetched: 3565158,
		BytesNew: 1992294, SnapshotID: "0123abcd"}
	if d != want || m["store_requests"] != float64(5) {
		t.Errorf("got %+v (summary %v), want %+v", d, m, want)
	}
	for _, tc := range []struct{ name, from, to, err string }{
		{"no summary", `"type":"summary"`, `"type":"progress"`, "no {\"type\":\"summary\"}"},
		{"other VM", `"name":"bench"`, `"name":"web"`, `want the one VM "bench"`},
		{"failed VM", `"ok":true`, `"ok":false,"error":"snapshot refused"`, "snapshot refused"},
		{"unknown read", `"read":"changed"`, `"read":"partial"`, `disk read "partial"`},
		{"negative", `"bytes_new":1992294`, `"bytes_new":-1`, "negative"},
		{"read beyond", `"bytes_read":655360`, `"bytes_read":67108865`, "bytes read from a disk"},
		{"too many blocks", `"changed_blocks":10`, `"changed_blocks":1025`, "changed blocks on a disk of 1024"},
		{"bad size", `"size":67108864`, `"size":0`, "disk size 0"},
		{"fraction", `"changed_blocks":10`, `"changed_blocks":1.5`, "coffer's summary"},
		{"no disks", `"disks":[{`, `"disks":[],"x":[{`, "0 disks"},
		{"no snapshot", `"snapshot_id":"0123abcd"`, `"snapshot_id":""`, "no snapshot_id"},
		{"wrong type", `"failed":0`, `"failed":"none"`, "coffer's summary"},
	} {
		bad := strings.Replace(xenSummary, tc.from, tc.to, 1)
		if bad == xenSummary {
			t.Fatalf("%s: %q not in the summary", tc.name, tc.from)
		}
		if _, _, err := parseXenSummary([]byte(bad)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.err)
		}
	}
}

func FuzzParseXenSummary(f *testing.F) {
	f.Add([]byte(xenSummary))
	f.Add([]byte(strings.Replace(xenSummary, `"read":"changed"`, `"read":"full"`, 1)))
	f.Add([]byte(`{"type":"summary","vms":[{"name":"bench","ok":true,"disks":[{"size":1e300}]}]}`))
	f.Add([]byte(`{"type":"summary","vms":null}` + "\n{\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		_, d, err := parseXenSummary(out)
		if err != nil {
			return
		}
		if err := d.check(); err != nil || d.BytesRead > d.Size {
			t.Fatalf("accepted inconsistent figures %+v: %v", d, err)
		}
	})
}

func TestCheckServeInfo(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	url, got, err := checkServeInfo(&xapisim.ServeInfo{URL: "https://127.0.0.1:4443", Fingerprint: fp})
	if err != nil || url != "https://127.0.0.1:4443" || got != fp {
		t.Errorf("good serve.json: %q %q %v", url, got, err)
	}
	for _, bad := range []xapisim.ServeInfo{
		{URL: "http://127.0.0.1:4443", Fingerprint: fp},
		{URL: "https://10.0.0.1:4443", Fingerprint: fp},
		{URL: "https://127.0.0.1.example.com:1", Fingerprint: fp},
		{URL: "https://127.0.0.1:4443", Fingerprint: strings.ToUpper(fp)},
		{URL: "https://127.0.0.1:4443", Fingerprint: fp[:62]},
	} {
		if _, _, err := checkServeInfo(&bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// cannedXen is a finished xen scenario: the CBT night takes cbtWall
// seconds and reads readBlocks blocks of 64 KiB of a 16 GiB disk; restic's
// second night takes resticWall seconds (none when 0).
func cannedXen(cbtWall, resticWall float64, readBlocks int64) *XenResult {
	const size = 16 << 30
	st := func(name string, wall float64) *Step {
		return &Step{Name: name, WallSeconds: wall, CPUSeconds: wall / 2, MaxRSSKiB: 100 << 10, ImageBytes: size,
			MBps: size / 1e6 / wall, ServerCPU: 0.5}
	}
	yes := true
	x := &XenResult{Target: targetLocal, DiskSize: size, ChangedPercent: 1, Blocks: size / xenBlock, Verified: &yes,
		Steps: []*Step{st(xenNight1, 80), st(xenCBT, cbtWall), st(xenFullRead, 60), st(xenUnchanged, 0.8), st(xenRestore, 40)},
		Disks: []XenDisk{
			{Step: xenNight1, Read: "full", Reason: "first backup", Size: size, BytesRead: size},
			{Step: xenCBT, Read: "changed", Size: size, ChangedBlocks: readBlocks, BytesRead: readBlocks * xenBlock},
			{Step: xenFullRead, Read: "full", Reason: "--full-read", Size: size, BytesRead: size},
			{Step: xenUnchanged, Read: "changed", Size: size},
		}}
	x.Steps[4].Verified = &yes
	x.Steps[1].StoredBytes, x.Steps[1].StoredDelta = 5<<30, 432<<20
	if resticWall > 0 {
		x.Steps = append(x.Steps, st(xenResticFirst, 200), st(xenResticSecond, resticWall))
	} else {
		x.ResticSkipped = "restic not selected (--tools, --peers): its second night not run"
	}
	return x
}

func xenCheckMap(r *Results) map[string]Check {
	got := map[string]Check{}
	for _, c := range checks(r) {
		got[c.Name] = c
	}
	return got
}

func TestXenChecks(t *testing.T) {
	const speed, read = "xen CBT night vs restic second night", "xen CBT night reads of the disk (%)"
	r := &Results{Config: config{Tools: []string{toolCoffer, toolRestic}, Targets: []string{targetLocal}}}
	r.Xen = cannedXen(2, 50, 2621) // 25x; 1.00% read
	got := xenCheckMap(r)
	if c := got[speed]; c.Status != "PASS" || c.Value != 25 || c.Target != targetLocal {
		t.Errorf("speed: %+v, want PASS at 25x", c)
	}
	if c := got[read]; c.Status != "PASS" || c.Value < 0.99 || c.Value > 1.01 {
		t.Errorf("read: %+v, want PASS at 1%%", c)
	}
	if c := got["xen CBT night vs Coffer's full read"]; c.Status != "info" || c.Value < 29.99 || c.Value > 30.01 {
		t.Errorf("vs full read: %+v, want 30x", c)
	}
	if c := got["xen fixed cost of a run, nothing changed (s)"]; c.Value != 0.8 {
		t.Errorf("fixed cost: %+v", c)
	}
	if c := got["xen restore of the latest night equals night 2"]; c.Status != "PASS" {
		t.Errorf("restore: %+v", c)
	}

	r.Xen = cannedXen(4, 50, 4000) // 12.5x; 1.53% read
	got = xenCheckMap(r)
	if got[speed].Status != "FAIL" || got[read].Status != "FAIL" {
		t.Errorf("too slow, reading too much: %+v %+v", got[speed], got[read])
	}
	r.Xen.Disks[1].Read, r.Xen.Disks[1].BytesRead = "full", 0
	if c := xenCheckMap(r)[read]; c.Status != "FAIL" {
		t.Errorf("a CBT night that fell back to a full read: %+v", c)
	}

	r.Xen = cannedXen(2, 0, 2621)
	if c := xenCheckMap(r)[speed]; c.Status != "n/a" || !strings.Contains(c.Note, "restic not selected") {
		t.Errorf("without restic: %+v", c)
	}
	r.Xen = &XenResult{DiskSize: 1 << 30, Error: "xapisim serve exited at start"}
	got = xenCheckMap(r)
	if c := got[read]; c.Status != "n/a" || !strings.Contains(c.Note, "xapisim serve exited") {
		t.Errorf("failed scenario: %+v", c)
	}
	r.Xen = nil
	if _, ok := xenCheckMap(r)[speed]; ok {
		t.Error("xen checks without the xen scenario")
	}
}

func TestXenReport(t *testing.T) {
	r := &Results{Config: config{Seed: 1, Tools: []string{toolCoffer, toolRestic}, Targets: []string{targetLocal},
		Scenarios: []string{scenarioXen}}, Xen: cannedXen(2, 50, 2621)}
	r.Xen.Steps[2].Error = "coffer backup: exit status 1"
	r.Xen.Notes = []string{"a note"}
	r.Checks = checks(r)
	var out bytes.Buffer
	report(&out, r)
	for _, s := range []string{
		"XenServer VM through the simulator (xapisim), changed block tracking; target local only",
		"16 GiB disk of the reference mix, seed 1",
		"coffer night 2 (CBT)", "changed", "2621", "432.0",
		"coffer night 3 (--full-read)  failed",
		"restic second night", "verified",
		"CBT night: 2.00 s, 25.00x restic's second night (target >= 20x)",
		"read 1.00% of the disk over NBD (target <= 1.5%)",
		"fixed cost of a run (night 4, nothing changed): 0.80 s wall, 0.40 s CPU; the CBT night less it: 1.20 s",
		"note: a note",
		"PASS  local  xen CBT night vs restic second night",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}
	// Every row's read cell ends under the header's, also after rows
	// without figures.
	lines := strings.Split(out.String(), "\n")
	end := -1
	for _, line := range lines {
		if strings.HasPrefix(strings.TrimSpace(line), "step ") {
			end = strings.Index(line, " read ") + len(" read")
		}
	}
	rows := 0
	for _, line := range lines {
		title := strings.TrimSpace(line)
		if !strings.HasPrefix(title, "coffer ") && !strings.HasPrefix(title, "restic ") || strings.Contains(title, "failed") {
			continue
		}
		rows++
		ok := false
		for _, v := range []string{" full", " changed", " verified", " -"} {
			ok = ok || len(line) >= end && strings.HasSuffix(line[:end], v) && (len(line) == end || line[end] == ' ')
		}
		if !ok {
			t.Errorf("read cell does not end at column %d: %q", end, line)
		}
	}
	if end < 0 || rows != 6 {
		t.Errorf("header's read column at %d, %d rows with figures, want 6", end, rows)
	}
	var section bytes.Buffer
	xenReport(&section, r)
	if strings.Contains(section.String(), " \n") {
		t.Errorf("trailing blanks in the section:\n%s", section.String())
	}
	// The xen scenario prints no tables of the other scenarios.
	if strings.Contains(out.String(), "Full backup (night 1)") {
		t.Errorf("empty tables of other scenarios printed:\n%s", out.String())
	}
}

// xenBench is a bench of the xen scenario at a tiny size that leaves the
// page cache alone and does not wait for a quiet machine, with restic when
// it is installed.
func xenBench(t *testing.T, cofferBin string) *bench {
	t.Helper()
	if testing.Short() {
		t.Skip("builds coffer and xapisim")
	}
	dir := t.TempDir()
	args := []string{"--scenarios", "xen", "--xen-size", "64MiB", "--targets", "local", "--workdir", dir, "--keep",
		"--tools", "coffer,restic"}
	cfg, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CofferBin = cofferBin
	for _, d := range []string{"images", "runs", "logs", "live", "bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	b := &bench{cfg: cfg, out: &out, res: &Results{Config: cfg}, keepCache: true}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bench output:\n%s", out.String())
		}
	})
	b.findTools(context.Background())
	if b.bins[toolCoffer] == "" {
		t.Fatalf("coffer not built: %+v", b.res.Tools)
	}
	return b
}

func TestXenScenario(t *testing.T) {
	b := xenBench(t, "")
	x := b.runXen(context.Background())
	if x.Error != "" {
		t.Fatalf("scenario failed: %s", x.Error)
	}
	if x.Verified == nil || !*x.Verified {
		t.Error("restore not verified")
	}
	// The delta restore fetches about the changed blocks, not the disk.
	if x.DeltaVerified == nil || !*x.DeltaVerified || x.DeltaFetched <= 0 || x.DeltaFetched*100 > 3*x.DiskSize {
		t.Errorf("delta restore: verified %v, fetched %d of %d bytes", x.DeltaVerified, x.DeltaFetched, x.DiskSize)
	}
	want := map[string]string{xenNight1: "full", xenCBT: "changed", xenFullRead: "full", xenUnchanged: "changed"}
	for step, read := range want {
		d := x.disk(step)
		if d == nil || d.Read != read || x.step(step) == nil || x.step(step).WallSeconds <= 0 {
			t.Errorf("%s: %+v, want a %s read", step, d, read)
		}
	}
	// 1% of 1024 blocks, read over NBD and nothing else.
	if d := x.disk(xenCBT); d == nil || d.ChangedBlocks < 9 || d.ChangedBlocks > 11 || d.BytesRead != d.ChangedBlocks*xenBlock {
		t.Errorf("CBT night: %+v, want about 10 blocks read", d)
	}
	if n1, cbt := x.step(xenNight1), x.step(xenCBT); n1 == nil || cbt == nil || cbt.StoredDelta <= 0 ||
		cbt.StoredDelta > n1.StoredDelta/4 || cbt.StoredBytes != n1.StoredBytes+cbt.StoredDelta {
		t.Errorf("stored: night 1 %+v, CBT night %+v", n1, cbt)
	}
	if d := x.disk(xenFullRead); d == nil || d.BytesRead != x.DiskSize {
		t.Errorf("--full-read night: %+v, want the whole disk read", d)
	}
	if d := x.disk(xenUnchanged); d == nil || d.ChangedBlocks != 0 || d.BytesRead != 0 {
		t.Errorf("unchanged night: %+v, want nothing read", d)
	}
	if _, err := os.Stat(filepath.Join(b.cfg.Workdir, "runs", "xen-pool", "serve.json")); err == nil {
		t.Error("xapisim serve still running: serve.json left")
	}
	if d := x.disk(xenProfiled); d == nil || d.Read != "changed" || d.ChangedBlocks == 0 || x.CPUProfile == "" || fileSize(x.CPUProfile) == 0 {
		t.Errorf("profiled night: %+v, profile %q (%d bytes)", d, x.CPUProfile, fileSize(x.CPUProfile))
	}
	if _, ok := b.bins[toolRestic]; ok != (x.step(xenResticSecond) != nil) {
		t.Errorf("restic installed %v, restic's second night %+v (skipped: %q)", ok, x.step(xenResticSecond), x.ResticSkipped)
	}
	b.res.Xen = x
	b.res.Checks = checks(b.res)
	var out bytes.Buffer
	report(&out, b.res)
	for _, s := range []string{"coffer night 2 (CBT)", "PASS  local  xen CBT night reads of the disk (%)",
		"PASS  local  xen restore of the latest night equals night 2",
		"PASS  local  xen delta restore of a 1%-changed disk", "fixed cost of a run", "go tool pprof -top "} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, out.String())
		}
	}
}

func TestXenScenarioFailureStopsThePool(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "fake-coffer")
	// --help and init succeed; every backup fails as coffer would, on stderr.
	script := "#!/bin/sh\ncase \" $* \" in *' backup '*) echo 'coffer: the pool refused the login' >&2; exit 1;; esac\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	b := xenBench(t, fake)
	x := b.runXen(context.Background())
	if !strings.Contains(x.Error, "the pool refused the login") || len(x.Steps) != 1 || x.Steps[0].Error == "" {
		t.Errorf("a failed night: error %q, steps %+v", x.Error, x.Steps)
	}
	if _, err := os.Stat(filepath.Join(b.cfg.Workdir, "runs", "xen-pool", "serve.json")); err == nil {
		t.Error("xapisim serve still running after the failure")
	}
	var out bytes.Buffer
	b.res.Xen = x
	xenReport(&out, b.res)
	if !strings.Contains(out.String(), "coffer night 1 (full read)  failed") || !strings.Contains(out.String(), "stopped: ") {
		t.Errorf("report of a failed scenario:\n%s", out.String())
	}
}
