package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
)

// Issue 17's targets for a CBT night, at 1% of the blocks changed.
const (
	xenSpeedTarget = 20  // CBT night vs restic's second night, disk size / wall
	xenReadTarget  = 1.5 // % of the disk read over NBD
)

// xenChecks are the xen scenario's targets: the CBT night at least 20x
// restic's second night and reading at most 1.5% of the disk, and for
// information the CBT night against Coffer's full read, the fixed cost of
// a run and the restore's check.
func xenChecks(r *Results) []Check {
	x := r.Xen
	if x == nil {
		return nil
	}
	nan := num(math.NaN())
	cbt, restic, full, fixed := x.step(xenCBT), x.step(xenResticSecond), x.step(xenFullRead), x.step(xenUnchanged)
	speed := Check{Name: "xen CBT night vs restic second night", Target: targetLocal, Value: nan,
		Limit: fmt.Sprintf(">= %dx", xenSpeedTarget), Status: "n/a", Note: x.missing(xenResticSecond)}
	if cbt != nil && restic != nil {
		speed.Value = ratio(cbt.MBps, restic.MBps)
		speed.Status = passFail(float64(speed.Value) >= xenSpeedTarget)
		speed.Note = fmt.Sprintf("%.2f s vs %.2f s, %g%% of blocks changed", cbt.WallSeconds, restic.WallSeconds, x.ChangedPercent)
	}
	read := Check{Name: "xen CBT night reads of the disk (%)", Target: targetLocal, Value: nan,
		Limit: fmt.Sprintf("<= %g%%", xenReadTarget), Status: "n/a", Note: x.missing(xenCBT)}
	if d := x.disk(xenCBT); d != nil {
		read.Value = num(100 * float64(d.BytesRead) / float64(x.DiskSize))
		read.Status = passFail(d.Read == "changed" && float64(read.Value) <= xenReadTarget)
		read.Note = fmt.Sprintf("%s read over NBD (%s), %d changed blocks", humanize.IBytes(uint64(d.BytesRead)), d.Read, d.ChangedBlocks)
	}
	vsFull := Check{Name: "xen CBT night vs Coffer's full read", Target: targetLocal, Value: nan, Limit: "info", Status: "info",
		Note: x.missing(xenFullRead)}
	if cbt != nil && full != nil {
		vsFull.Value = ratio(cbt.MBps, full.MBps)
		vsFull.Note = fmt.Sprintf("%.2f s vs %.2f s", cbt.WallSeconds, full.WallSeconds)
	}
	cost := Check{Name: "xen fixed cost of a run, nothing changed (s)", Target: targetLocal, Value: nan, Limit: "info",
		Status: "info", Note: x.missing(xenUnchanged)}
	if fixed != nil {
		cost.Value = num(fixed.WallSeconds)
		cost.Note = fmt.Sprintf("%.2f s CPU", fixed.CPUSeconds)
	}
	restore := Check{Name: "xen restore of the latest night equals night 2", Target: targetLocal, Value: nan,
		Limit: "equal", Status: "n/a", Note: x.missing(xenRestore)}
	if x.Verified != nil {
		restore.Status, restore.Note, restore.Value = passFail(*x.Verified), "", 0
		if *x.Verified {
			restore.Value = 1
		}
	}
	delta := Check{Name: "xen delta restore of a 1%-changed disk: fetched (% of the disk)", Target: targetLocal, Value: nan,
		Limit: "<= 3%", Status: "n/a", Note: x.missing(xenDelta)}
	if d := x.step(xenDelta); d != nil && x.DeltaVerified != nil && x.DiskSize > 0 {
		delta.Value = num(100 * float64(x.DeltaFetched) / float64(x.DiskSize))
		delta.Status = passFail(*x.DeltaVerified && float64(delta.Value) <= xenDeltaTarget)
		delta.Note = fmt.Sprintf("%s fetched in %.2f s", humanize.IBytes(uint64(x.DeltaFetched)), d.WallSeconds)
		if full := x.step(xenRestore); full != nil {
			delta.Note += fmt.Sprintf(", %.1fx faster than the full restore (%.2f s)", full.WallSeconds/d.WallSeconds, full.WallSeconds)
		}
	}
	return []Check{speed, read, vsFull, cost, restore, delta}
}

// xenDeltaTarget is the most a delta restore of a disk 1% of whose blocks
// changed may download, in % of the disk (issue 18).
const xenDeltaTarget = 3.0

// missing says why a step has no figures: the scenario's error, or that
// restic did not run.
func (x *XenResult) missing(step string) string {
	for _, st := range x.Steps {
		if st.Name == step && st.Error != "" {
			return "failed: " + shorten(st.Error, 200)
		}
	}
	if x.Error != "" {
		return "not run: " + shorten(x.Error, 200)
	}
	if step == xenResticSecond && x.ResticSkipped != "" {
		return x.ResticSkipped
	}
	return "not run"
}

// xenReport prints the xen scenario: a row per step, then the comparisons.
func xenReport(w io.Writer, r *Results) {
	x := r.Xen
	if x == nil {
		return
	}
	fmt.Fprintf(w, "\nXenServer VM through the simulator (xapisim), changed block tracking; target local only\n")
	fmt.Fprintf(w, "  %s disk of the reference mix, seed %d (%.0f MiB data); before night 2 the guest wrote %g%% of its %d blocks of 64 KiB\n",
		humanize.IBytes(uint64(x.DiskSize)), r.Config.Seed, float64(x.Night1Allocated)/mib, x.ChangedPercent, x.Blocks)
	fmt.Fprintf(w, "  MB/s = disk size / wall; xapisim CPU is the simulator's, apart from the tool's; +stored = the repository's growth;\n")
	fmt.Fprintf(w, "  read, fetched (from the repository) and new are coffer's figures for the disk\n")
	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\twall s\tMB/s\tCPU s\tpeak RSS MiB\txapisim CPU s\t+stored MiB\tread\tchanged blocks\tread MiB\t% of disk\tfetched MiB\tnew MiB\t")
	for _, name := range xenSteps {
		xenRow(tw, x, name)
	}
	tw.Flush()
	for _, line := range strings.Split(strings.TrimSuffix(table.String(), "\n"), "\n") {
		fmt.Fprintln(w, strings.TrimRight(line, " ")) // without the empty cells' padding
	}
	xenSummaryLines(w, x)
	if x.CPUProfile != "" {
		fmt.Fprintf(w, "  coffer's CPU profile of night 5 (a CBT night like night 2, not compared): go tool pprof -top %s\n", x.CPUProfile)
	}
	for _, n := range x.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if x.Error != "" {
		fmt.Fprintf(w, "  stopped: %s\n", shorten(x.Error, 300))
	}
}

// xenRow prints one step's row, or nothing when the step did not run.
func xenRow(tw io.Writer, x *XenResult, name string) {
	var st *Step
	for _, s := range x.Steps {
		if s.Name == name {
			st = s
		}
	}
	if st == nil {
		return
	}
	title := xenStepTitles[name]
	if st.Error != "" {
		fmt.Fprintf(tw, "%s\tfailed%s\n", title, strings.Repeat("\t", 12))
		return
	}
	stored := "-"
	if st.StoredBytes > 0 {
		stored = fmt.Sprintf("%.1f", float64(st.StoredDelta)/mib)
	}
	row := fmt.Sprintf("%s\t%.2f\t%.0f\t%.2f\t%.0f\t%.2f\t%s\t", title, st.WallSeconds, st.MBps, st.CPUSeconds,
		float64(st.MaxRSSKiB)/1024, st.ServerCPU, stored)
	switch d := x.disk(name); {
	case d != nil:
		row += fmt.Sprintf("%s\t%d\t%.1f\t%.2f\t%.1f\t%.1f\t", d.Read, d.ChangedBlocks, float64(d.BytesRead)/mib,
			100*float64(d.BytesRead)/float64(x.DiskSize), float64(d.BytesFetched)/mib, float64(d.BytesNew)/mib)
	case name == xenRestore && st.Verified != nil && *st.Verified:
		row += "verified\t\t\t\t\t\t" // every row has every cell, so that the columns stay aligned
	default:
		row += "-\t\t\t\t\t\t"
	}
	fmt.Fprintln(tw, row)
}

// xenSummaryLines prints the CBT night against restic's second night and
// Coffer's full read, and the fixed cost of a run apart.
func xenSummaryLines(w io.Writer, x *XenResult) {
	cbt := x.step(xenCBT)
	if cbt == nil {
		return
	}
	line := fmt.Sprintf("  CBT night: %.2f s", cbt.WallSeconds)
	if restic := x.step(xenResticSecond); restic != nil {
		line += fmt.Sprintf(", %s restic's second night (target >= %dx)", fx(ratio(cbt.MBps, restic.MBps)), xenSpeedTarget)
	}
	if full := x.step(xenFullRead); full != nil {
		line += fmt.Sprintf(", %s Coffer's full read", fx(ratio(cbt.MBps, full.MBps)))
	}
	if d := x.disk(xenCBT); d != nil {
		line += fmt.Sprintf("; read %.2f%% of the disk over NBD (target <= %g%%)", 100*float64(d.BytesRead)/float64(x.DiskSize), xenReadTarget)
	}
	fmt.Fprintln(w, line)
	if fixed := x.step(xenUnchanged); fixed != nil {
		fmt.Fprintf(w, "  fixed cost of a run (night 4, nothing changed): %.2f s wall, %.2f s CPU; the CBT night less it: %.2f s\n",
			fixed.WallSeconds, fixed.CPUSeconds, cbt.WallSeconds-fixed.WallSeconds)
	}
}
