package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
)

const mib = 1 << 20

// num is a float64 that encodes NaN (unknown) as JSON null.
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(n))
}

// Check is one target of PRODUCT.md "Numbers to beat".
type Check struct {
	Name   string `json:"name"`
	Target string `json:"target,omitempty"` // local, s3, or "" for both
	Value  num    `json:"value"`
	Limit  string `json:"limit"`
	Status string `json:"status"` // PASS, FAIL or n/a
	Note   string `json:"note,omitempty"`
}

// Ratio compares Coffer (or, without it, kopia) with a peer on one target,
// in one scenario.
type Ratio struct {
	Tool     string `json:"tool"`
	Peer     string `json:"peer"`
	Target   string `json:"target"`
	Scenario string `json:"scenario"`
	// Throughput ratios are tool/peer MB/s (higher is better); stored, RSS
	// and CPU ratios are tool/peer (lower is better). NaN when unknown.
	FullThroughput    num `json:"full_throughput"`
	FullStored        num `json:"full_stored"`
	SecondThroughput  num `json:"second_throughput"`
	SecondIncrement   num `json:"second_increment"`
	RestoreThroughput num `json:"restore_throughput"`
	PeakRSS           num `json:"peak_rss"`
	CPU               num `json:"cpu"`
	// StartupWall is tool/peer wall time per start-up command (lower is
	// better); absent when the scenario measured no start-up rows.
	StartupWall map[string]num `json:"startup_wall,omitempty"`
}

func ratio(a, b float64) num {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return num(math.NaN())
	}
	return num(a / b)
}

// peakRSS is the largest RSS of a session's steps, in KiB.
func (s *Session) peakRSS() float64 {
	var m int64
	for _, st := range s.Steps {
		m = max(m, st.MaxRSSKiB)
	}
	return float64(m)
}

func (s *Session) cpu() float64 {
	var c float64
	for _, st := range s.Steps {
		c += st.CPUSeconds
	}
	return c
}

func (s *Session) complete() bool {
	return s != nil && s.Error == "" && s.step(stepRestore) != nil
}

func metric(s *Session, step string, f func(*Step) float64) float64 {
	if st := s.step(step); st != nil {
		return f(st)
	}
	return math.NaN()
}

func mbps(st *Step) float64   { return st.MBps }
func stored(st *Step) float64 { return float64(st.StoredBytes) }
func delta(st *Step) float64  { return float64(st.StoredDelta) }

func compare(r *Results, scenario, tool, peer, target string) (Ratio, bool) {
	a, b := r.sessionIn(scenario, tool, target), r.sessionIn(scenario, peer, target)
	if a == nil || b == nil || a.step(stepFull) == nil || b.step(stepFull) == nil {
		return Ratio{}, false
	}
	rt := Ratio{Tool: tool, Peer: peer, Target: target, Scenario: scenario,
		FullThroughput:    ratio(metric(a, stepFull, mbps), metric(b, stepFull, mbps)),
		FullStored:        ratio(metric(a, stepFull, stored), metric(b, stepFull, stored)),
		SecondThroughput:  ratio(metric(a, stepSecond, mbps), metric(b, stepSecond, mbps)),
		SecondIncrement:   ratio(metric(a, stepSecond, delta), metric(b, stepSecond, delta)),
		RestoreThroughput: ratio(metric(a, stepRestore, mbps), metric(b, stepRestore, mbps)),
		PeakRSS:           num(math.NaN()),
		CPU:               num(math.NaN()),
	}
	if a.complete() && b.complete() {
		rt.PeakRSS = ratio(a.peakRSS(), b.peakRSS())
		rt.CPU = ratio(a.cpu(), b.cpu())
	}
	for _, c := range startupCommands {
		x, y := a.startupStep(c), b.startupStep(c)
		if x != nil && y != nil {
			if rt.StartupWall == nil {
				rt.StartupWall = map[string]num{}
			}
			rt.StartupWall[c] = ratio(x.WallSeconds, y.WallSeconds)
		}
	}
	return rt, true
}

// startupStep returns a successful start-up row of the session, or nil.
func (s *Session) startupStep(name string) *Step {
	if s == nil {
		return nil
	}
	for _, st := range s.Startup {
		if st.Name == name && st.Error == "" {
			return st
		}
	}
	return nil
}

// checks evaluates the targets of PRODUCT.md against restic, per target,
// and fills r.Ratios.
func checks(r *Results) []Check {
	r.Ratios = nil
	for _, sc := range r.scenarios() {
		for _, target := range r.Config.Targets {
			for _, pair := range [][2]string{{toolCoffer, toolRestic}, {toolCoffer, toolKopia}, {toolKopia, toolRestic}} {
				if pair[0] == toolKopia && r.sessionIn(sc, toolCoffer, target) != nil {
					continue // kopia vs restic only when Coffer is not in the run
				}
				if rt, ok := compare(r, sc, pair[0], pair[1], target); ok {
					r.Ratios = append(r.Ratios, rt)
				}
			}
		}
	}
	var cs []Check
	atLeast := func(name, target string, v num, limit float64, note string) {
		c := Check{Name: name, Target: target, Value: v, Limit: fmt.Sprintf(">= %gx", limit), Status: "n/a", Note: note}
		if !math.IsNaN(float64(v)) {
			c.Status = passFail(float64(v) >= limit)
		}
		cs = append(cs, c)
	}
	atMost := func(name, target string, v num, limit float64, note string) {
		c := Check{Name: name, Target: target, Value: v, Limit: fmt.Sprintf("<= %gx", limit), Status: "n/a", Note: note}
		if !math.IsNaN(float64(v)) {
			c.Status = passFail(float64(v) <= limit)
		}
		cs = append(cs, c)
	}
	for _, target := range r.Config.Targets {
		if r.session(toolCoffer, target) == nil || r.session(toolRestic, target) == nil {
			continue
		}
		rt, ok := compare(r, scenarioMix, toolCoffer, toolRestic, target)
		if !ok {
			nan := num(math.NaN())
			rt = Ratio{FullThroughput: nan, FullStored: nan, SecondThroughput: nan, SecondIncrement: nan,
				RestoreThroughput: nan, PeakRSS: nan, CPU: nan}
		}
		atLeast("full backup throughput vs restic", target, rt.FullThroughput, 2, "")
		atMost("full backup bytes stored vs restic", target, rt.FullStored, 1.03, "")
		atLeast("second night throughput vs restic (whole image read)", target, rt.SecondThroughput, 2, "")
		cs = append(cs, Check{Name: "second night throughput vs restic (changed block tracking)", Target: target,
			Value: num(math.NaN()), Limit: ">= 20x", Status: "n/a", Note: "image backups read the whole image; CBT needs XenServer"})
		atMost("second night bytes stored vs restic", target, rt.SecondIncrement, 0.5, "")
		atLeast("restore throughput vs restic --sparse", target, rt.RestoreThroughput, 2, "")
		if q := r.session(toolCoffer, target).step(stepRestoreQCOW2); q != nil {
			atLeast("restore into qcow2 throughput vs restic --sparse (raw)", target,
				ratio(q.MBps, metric(r.session(toolRestic, target), stepRestore, mbps)), 2, "")
		}
		sparse := Check{Name: "restored image sparse", Target: target, Value: num(math.NaN()),
			Limit: "allocated <= night 2's + 5%", Status: "n/a"}
		if st := r.session(toolCoffer, target).step(stepRestore); st != nil && r.Images.Night2Allocated > 0 {
			sparse.Value = num(float64(st.RestoredAlloc) / float64(r.Images.Night2Allocated))
			sparse.Status = passFail(sparse.Value <= 1.05)
			sparse.Note = fmt.Sprintf("%.0f MiB allocated for %.0f MiB of data", float64(st.RestoredAlloc)/mib,
				float64(r.Images.Night2Allocated)/mib)
		}
		cs = append(cs, sparse)
		c := Check{Name: "peak RSS vs restic", Target: target, Value: rt.PeakRSS, Limit: "< 1x", Status: "n/a"}
		if !math.IsNaN(float64(rt.PeakRSS)) {
			c.Status = passFail(rt.PeakRSS < 1)
		}
		cs = append(cs, c)
		if v, note := requestsPerGiB(r.session(toolCoffer, target)); !math.IsNaN(v) {
			cs = append(cs, Check{Name: "store requests per GiB stored", Target: target, Value: num(v),
				Limit: "info (16-64 MiB packs: 16-64 per GiB)", Status: "info", Note: note})
		}
	}
	cs = append(cs, realDiskChecks(r)...)
	cs = append(cs, vaultChecks(r)...)
	cs = append(cs, xenChecks(r)...)
	cs = append(cs, seedChecks(r)...)
	cs = append(cs, instantAccessChecks(r)...)
	cs = append(cs, bandwidthChecks(r)...)
	if r.session(toolCoffer, targetLocal) != nil || r.session(toolCoffer, targetS3) != nil {
		c := Check{Name: "index memory per stored chunk, 10M entries (bytes)", Value: num(math.NaN()), Limit: "<= 40", Status: "n/a",
			Note: "10 million entries: BenchmarkIndexMemory in ./internal/index"}
		if r.IndexBytesPerEntry != nil {
			c.Value = num(*r.IndexBytesPerEntry)
			c.Status = passFail(c.Value <= 40)
		}
		cs = append(cs, c)
		d := Check{Name: "index memory per stored chunk, reference disk (bytes)", Value: num(math.NaN()), Limit: "<= 40", Status: "n/a",
			Note: "the reference disk's index: coffer debug index-memory"}
		if r.DiskIndexBytesPerEntry != nil {
			d.Value = num(*r.DiskIndexBytesPerEntry)
			d.Status = passFail(d.Value <= 40)
		}
		cs = append(cs, d)
	}
	return cs
}

// requestsPerGiB is Coffer's store requests per GiB stored over both
// backups, from the summaries' store_requests or else from the object count.
func requestsPerGiB(s *Session) (float64, string) {
	full, second := s.step(stepFull), s.step(stepSecond)
	if full == nil || second == nil || second.StoredBytes == 0 {
		return math.NaN(), ""
	}
	gib := float64(second.StoredBytes) / (1 << 30)
	r1, ok1 := number(full.Summary["store_requests"])
	r2, ok2 := number(second.Summary["store_requests"])
	if ok1 && ok2 {
		return (r1 + r2) / gib, fmt.Sprintf("%.0f requests for %.2f GiB", r1+r2, gib)
	}
	return float64(second.Objects) / gib, fmt.Sprintf("no store_requests in the summary: %d objects for %.2f GiB",
		second.Objects, gib)
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	}
	return 0, false
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

var bytesPerEntryRE = regexp.MustCompile(`([0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?) bytes/entry`)

// parseBytesPerEntry finds the bytes/entry metric in `go test -bench` output.
func parseBytesPerEntry(out string) (float64, bool) {
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "BenchmarkIndexMemory") {
			continue
		}
		if m := bytesPerEntryRE.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseFloat(m[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// indexMemory runs the index's memory benchmark; nil when it is missing.
func indexMemory(ctx context.Context, root string) *float64 {
	if root == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "BenchmarkIndexMemory", "-benchtime", "1x", "./internal/index")
	cmd.Dir = root
	out, _ := cmd.CombinedOutput()
	if v, ok := parseBytesPerEntry(string(out)); ok {
		return &v
	}
	return nil
}

// goBenchMetrics runs one Go benchmark of the module and returns the
// metrics its result line reports (unit -> value); nil when it did not run.
func goBenchMetrics(ctx context.Context, root, pkg, name, benchtime string) map[string]float64 {
	if root == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^"+name+"$", "-benchtime", benchtime, pkg)
	cmd.Dir = root
	out, _ := cmd.CombinedOutput()
	return parseBenchLine(string(out), name)
}

// parseBenchLine finds name's result in `go test -bench` output and returns
// its metrics by unit, or nil. The result may be split over lines: what
// the benchmark prints to stderr (a warning) lands between its name and
// its figures.
func parseBenchLine(out, name string) map[string]float64 {
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], name+"-") && f[0] != name {
			continue
		}
		for _, l := range lines[i:] {
			if !strings.Contains(l, " ns/op") {
				continue
			}
			g := strings.Fields(l[strings.LastIndex(l[:strings.Index(l, " ns/op")], "\t")+1:])
			m := map[string]float64{}
			for j := 0; j+1 < len(g); j += 2 {
				if v, err := strconv.ParseFloat(g[j], 64); err == nil {
					m[g[j+1]] = v
				}
			}
			return m
		}
	}
	return nil
}

// instantAccessChecks are the NBD figures of BenchmarkInstantAccess.
func instantAccessChecks(r *Results) []Check {
	ia := r.InstantAccess
	first := Check{Name: "instant access (NBD): first byte of a 16 GiB disk (ms)", Value: num(math.NaN()), Limit: "<= 1000",
		Status: "n/a", Note: "BenchmarkInstantAccess in ./internal/nbdexport (local repository, loopback NBD)"}
	seq := Check{Name: "instant access (NBD): reading the data in order (MB/s)", Value: num(math.NaN()), Limit: "info",
		Status: "info", Note: "one client, 1 MiB reads, cold cache"}
	if ia != nil {
		first.Value, first.Status = num(ia.FirstByteMs), passFail(ia.FirstByteMs <= 1000)
		seq.Value = num(ia.MBps)
	}
	return []Check{first, seq}
}

func fx(v num) string {
	if math.IsNaN(float64(v)) {
		return "n/a"
	}
	return strconv.FormatFloat(float64(v), 'f', 2, 64) + "x"
}

// report prints the tables, ratios and checks.
func report(w io.Writer, r *Results) {
	im := r.Images
	if im.Night1Size > 0 {
		fmt.Fprintf(w, "\n== Coffer benchmark: %s image, seed %d (%.0f MiB data); night 2: %d of 64 KiB blocks changed (%d in holes), %s inserted\n",
			humanize.IBytes(uint64(im.Night1Size)), r.Config.Seed, float64(im.Night1Allocated)/mib,
			im.ChangedBlocks, im.ChangedInHoles, humanize.IBytes(uint64(im.InsertBytes)))
	} else {
		fmt.Fprintf(w, "\n== Coffer benchmark: seed %d; the reference mix not run\n", r.Config.Seed)
	}
	fmt.Fprintf(w, "   %d CPUs, %s/%s, %s. Warm page cache (image read once before each backup). MB/s = image size in 10^6 bytes / wall.\n",
		r.Machine.CPUs, r.Machine.GOOS, r.Machine.GOARCH, r.Machine.GoVersion)
	for _, t := range r.Tools {
		if t.Missing != "" {
			fmt.Fprintf(w, "   %s: missing: %s\n", t.Name, t.Missing)
		} else {
			fmt.Fprintf(w, "   %s: %s\n", t.Name, t.Version)
		}
	}
	if r.MinIO != nil {
		fmt.Fprintf(w, "   s3: MinIO %s on %s\n", r.MinIO.Version, r.MinIO.Endpoint)
	}
	if r.RealDisk != nil {
		d := r.RealDisk
		fmt.Fprintf(w, "   real ext4 disk: %s, %d files (%.0f MiB) in %d directories, %.0f MiB allocated; night 2: %d files written (%.1f MiB), %d removed\n",
			humanize.IBytes(uint64(d.Size)), d.Files, float64(d.DataBytes)/mib, d.Dirs, float64(d.Night1Allocated)/mib,
			d.ChangedFiles, float64(d.WrittenBytes)/mib, d.RemovedFiles)
	}
	for _, scenario := range r.scenarios() {
		for _, step := range []string{stepFull, stepSecond, stepRestore} {
			for _, target := range r.Config.Targets {
				stepTable(w, r, scenario, step, target)
			}
		}
	}
	startupTables(w, r)
	xenReport(w, r)
	seedReport(w, r)
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w, "\nRatios (throughput: higher is better; stored, RSS, CPU: lower is better)")
		for _, rt := range r.Ratios {
			where := rt.Target
			if rt.Scenario != scenarioMix {
				where += ", " + rt.Scenario
			}
			fmt.Fprintf(w, "%s vs %s [%s]: full throughput %s, stored %s; second night throughput %s, stored %s; restore throughput %s; peak RSS %s, CPU %s\n",
				rt.Tool, rt.Peer, where, fx(rt.FullThroughput), fx(rt.FullStored), fx(rt.SecondThroughput),
				fx(rt.SecondIncrement), fx(rt.RestoreThroughput), fx(rt.PeakRSS), fx(rt.CPU))
		}
	}
	if len(r.Checks) > 0 {
		fmt.Fprintf(w, "\nTargets (PRODUCT.md, Coffer against restic %s)\n", peerVersions[toolRestic])
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range r.Checks {
			target := c.Target
			if target == "" {
				target = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Status, target, c.Name, f2(c.Value), c.Limit, c.Note)
		}
		tw.Flush()
	}
	if st := r.Storm; st != nil {
		fmt.Fprintf(w, "\nVault, 16 uploads in flight: %d tenants x %d clients, %d MiB packs, %d rounds\n",
			st.Tenants, st.Clients/max(st.Tenants, 1), st.PackBytes>>20, st.Rounds)
		if st.Error != "" {
			fmt.Fprintf(w, "  not run: %s\n", shorten(st.Error, 300))
		} else {
			fmt.Fprintf(w, "  %d puts in %.1fs (%.0f MB/s), %d in flight at most; cofferd CPU %.1fs, RSS %.0f MiB before, %.0f MiB at most, peak (VmHWM) %.0f MiB\n",
				st.Puts, st.Seconds, st.MBps, st.MaxInFlight, st.CPUSeconds, float64(st.RSSBefore)/1024,
				float64(st.MaxRSSKiB)/1024, float64(st.PeakRSSKiB)/1024)
		}
		for _, e := range st.Errors {
			fmt.Fprintf(w, "  error: %s\n", shorten(e, 300))
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// stepTable prints one step of one scenario on one target, a row per tool.
func stepTable(w io.Writer, r *Results, scenario, step, target string) {
	fmt.Fprintf(w, "\n%s%s, target %s\n", scenarioTitles[scenario], stepTitles[step], target)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "tool\twall s\tMB/s\tCPU s\tpeak RSS MiB\t"
	switch step {
	case stepFull:
		head += "stored MiB\t"
	case stepSecond:
		head += "stored MiB\t+stored MiB\t"
	case stepRestore:
		head += "allocated MiB\tverified\t"
	}
	switch target {
	case targetS3:
		head += "MinIO CPU s\t"
	case targetVault:
		head += "MinIO CPU s\tcofferd CPU s\tcofferd peak RSS MiB\t"
	}
	fmt.Fprintln(tw, head)
	var failures []string
	type line struct{ tool, step string }
	var lines []line
	for _, tool := range r.Config.Tools {
		lines = append(lines, line{tool, step})
		if tool == toolCoffer && step == stepRestore {
			for _, extra := range []string{stepRestoreQCOW2, stepRestoreProxied} {
				if s := r.sessionIn(scenario, tool, target); s != nil && slices.ContainsFunc(s.Steps, func(x *Step) bool { return x.Name == extra }) {
					lines = append(lines, line{tool, extra})
				}
			}
		}
	}
	for _, ln := range lines {
		tool, s := ln.tool, r.sessionIn(scenario, ln.tool, target)
		if s == nil {
			continue
		}
		switch ln.step {
		case stepRestoreQCOW2:
			tool += " (qcow2)"
		case stepRestoreProxied:
			tool += " (proxied)"
		}
		var st *Step
		for _, x := range s.Steps {
			if x.Name == ln.step {
				st = x
			}
		}
		if st == nil || st.Error != "" {
			why, short := s.Error, "not run"
			switch {
			case st != nil:
				why, short = st.Error, "failed"
			case why == "missing" || why == "no MinIO":
				short = why
			}
			fmt.Fprintf(tw, "%s\t%s\t\n", tool, short)
			if why != "" && why != short {
				failures = append(failures, fmt.Sprintf("  %s: %s", tool, shorten(why, 300)))
			}
			continue
		}
		row := fmt.Sprintf("%s\t%.1f\t%.0f\t%.1f\t%.0f\t", tool, st.WallSeconds, st.MBps, st.CPUSeconds,
			float64(st.MaxRSSKiB)/1024)
		switch step {
		case stepFull:
			row += fmt.Sprintf("%.1f\t", float64(st.StoredBytes)/mib)
		case stepSecond:
			row += fmt.Sprintf("%.1f\t%.1f\t", float64(st.StoredBytes)/mib, float64(st.StoredDelta)/mib)
		case stepRestore:
			ok := "no"
			if st.Verified != nil && *st.Verified {
				ok = "yes"
			}
			row += fmt.Sprintf("%.1f\t%s\t", float64(st.RestoredAlloc)/mib, ok)
		}
		switch target {
		case targetS3:
			row += fmt.Sprintf("%.1f\t", st.ServerCPU)
		case targetVault:
			row += fmt.Sprintf("%.1f\t%.1f\t%.0f\t", st.ServerCPU, st.VaultCPU, float64(st.VaultRSSKiB)/1024)
		}
		fmt.Fprintln(tw, row)
	}
	tw.Flush()
	for _, f := range failures {
		fmt.Fprintln(w, f)
	}
}

func f2(v num) string {
	if math.IsNaN(float64(v)) {
		return "n/a"
	}
	return strconv.FormatFloat(float64(v), 'f', 2, 64)
}

func shorten(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// writeJSON writes r to path.
func writeJSON(path string, r *Results) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// vaultChecks are issue 10's bench targets for the vault: coffer through
// cofferd keeps at least 80% of its own s3 throughput, and cofferd's peak
// RSS stays under 256 MiB with 16 pack uploads in flight.
func vaultChecks(r *Results) []Check {
	v := r.session(toolCoffer, targetVault)
	if v == nil && r.Storm == nil {
		return nil
	}
	var cs []Check
	direct := r.session(toolCoffer, targetS3)
	for _, c := range []struct {
		name, step string
	}{{"vault full backup throughput vs coffer on s3", stepFull}, {"vault restore throughput vs coffer on s3", stepRestore}} {
		ck := Check{Name: c.name, Target: targetVault, Value: num(math.NaN()), Limit: ">= 0.80x", Status: "n/a"}
		if v != nil && direct != nil {
			ck.Value = ratio(metric(v, c.step, mbps), metric(direct, c.step, mbps))
			if !math.IsNaN(float64(ck.Value)) {
				ck.Status = passFail(ck.Value >= 0.80)
				ck.Note = fmt.Sprintf("%.0f vs %.0f MB/s", metric(v, c.step, mbps), metric(direct, c.step, mbps))
			}
		} else {
			ck.Note = "needs the s3 target in the same run"
		}
		cs = append(cs, ck)
	}
	// Restores in the cloud read through the vault: against restic
	// restoring from the same MinIO (the product's 2x restore target).
	vr := Check{Name: "vault restore throughput vs restic on s3 --sparse", Target: targetVault, Value: num(math.NaN()),
		Limit: ">= 2x", Status: "n/a", Note: "needs restic on the s3 target in the same run"}
	if rs := r.session(toolRestic, targetS3); v != nil && rs != nil {
		vr.Value = ratio(metric(v, stepRestore, mbps), metric(rs, stepRestore, mbps))
		if !math.IsNaN(float64(vr.Value)) {
			vr.Status = passFail(vr.Value >= 2)
			vr.Note = fmt.Sprintf("%.0f vs %.0f MB/s", metric(v, stepRestore, mbps), metric(rs, stepRestore, mbps))
		}
	}
	cs = append(cs, vr)
	// The same restore with every byte through cofferd (direct downloads
	// off): what an MSP whose agents cannot reach the bucket gets.
	if rs := r.session(toolRestic, targetS3); v != nil && rs != nil && v.step(stepRestoreProxied) != nil {
		pr := Check{Name: "vault restore, proxied, vs restic on s3 --sparse", Target: targetVault, Limit: "info", Status: "info",
			Value: ratio(metric(v, stepRestoreProxied, mbps), metric(rs, stepRestore, mbps)),
			Note:  fmt.Sprintf("%.0f vs %.0f MB/s; COFFER_DIRECT_DOWNLOADS=off", metric(v, stepRestoreProxied, mbps), metric(rs, stepRestore, mbps))}
		cs = append(cs, pr)
	}
	if v.complete() {
		var cpu float64
		var rss int64
		for _, st := range v.Steps {
			cpu += st.VaultCPU
			rss = max(rss, st.VaultRSSKiB)
		}
		cs = append(cs, Check{Name: "cofferd CPU seconds (both nights and the restore)", Target: targetVault, Value: num(cpu),
			Limit: "info", Status: "info", Note: fmt.Sprintf("coffer itself: %.1f s", v.cpu())})
		cs = append(cs, Check{Name: "cofferd peak RSS during the coffer session (MiB)", Target: targetVault,
			Value: num(float64(rss) / 1024), Limit: "< 256", Status: passFail(rss > 0 && rss < 256<<10), Note: "VmHWM"})
	}
	if st := r.Storm; st != nil {
		ck := Check{Name: "cofferd peak RSS, 16 pack uploads in flight (MiB)", Target: targetVault, Value: num(math.NaN()),
			Limit: "< 256", Status: "n/a", Note: st.Error}
		if st.Error == "" {
			ck.Value = num(float64(st.PeakRSSKiB) / 1024)
			ok := st.PeakRSSKiB > 0 && st.PeakRSSKiB < 256<<10 && len(st.Errors) == 0 &&
				st.Puts == int64(st.Clients*st.Rounds) && st.MaxInFlight >= int64(st.Clients)
			ck.Status = passFail(ok)
			ck.Note = fmt.Sprintf("VmHWM; %d of %d puts, %d in flight at most, %.0f MB/s",
				st.Puts, st.Clients*st.Rounds, st.MaxInFlight, st.MBps)
		}
		cs = append(cs, ck)
	}
	return cs
}
