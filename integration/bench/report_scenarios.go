package main

import (
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// realDiskChecks are the targets on the real ext4 disk, per target: a
// restore at least 2x restic's throughput (the product target), a restored
// image as sparse as night 2, and the backups' ratios for information.
func realDiskChecks(r *Results) []Check {
	var cs []Check
	for _, target := range r.Config.Targets {
		c := r.sessionIn(scenarioExt4, toolCoffer, target)
		if c == nil || r.sessionIn(scenarioExt4, toolRestic, target) == nil {
			continue
		}
		rt, ok := compare(r, scenarioExt4, toolCoffer, toolRestic, target)
		if !ok {
			nan := num(math.NaN())
			rt = Ratio{FullThroughput: nan, SecondThroughput: nan, RestoreThroughput: nan}
		}
		restore := Check{Name: "real ext4 disk: restore throughput vs restic --sparse", Target: target,
			Value: rt.RestoreThroughput, Limit: ">= 2x", Status: "n/a"}
		if !math.IsNaN(float64(rt.RestoreThroughput)) {
			restore.Status = passFail(rt.RestoreThroughput >= 2)
			restore.Note = fmt.Sprintf("%.2f s vs %.2f s", metric(c, stepRestore, wall),
				metric(r.sessionIn(scenarioExt4, toolRestic, target), stepRestore, wall))
		}
		cs = append(cs, restore,
			Check{Name: "real ext4 disk: full backup throughput vs restic", Target: target,
				Value: rt.FullThroughput, Limit: "info", Status: "info"},
			Check{Name: "real ext4 disk: second night throughput vs restic", Target: target,
				Value: rt.SecondThroughput, Limit: "info", Status: "info"})
		sparse := Check{Name: "real ext4 disk: restored image sparse", Target: target, Value: num(math.NaN()),
			Limit: "allocated <= night 2's + 5%", Status: "n/a"}
		if st := c.step(stepRestore); st != nil && r.RealDisk != nil && r.RealDisk.Night2Allocated > 0 {
			sparse.Value = num(float64(st.RestoredAlloc) / float64(r.RealDisk.Night2Allocated))
			sparse.Status = passFail(sparse.Value <= 1.05)
			sparse.Note = fmt.Sprintf("%.0f MiB allocated for %.0f MiB of data", float64(st.RestoredAlloc)/mib,
				float64(r.RealDisk.Night2Allocated)/mib)
		}
		cs = append(cs, sparse)
	}
	return cs
}

func wall(st *Step) float64 { return st.WallSeconds }

// startupTables prints the start-up rows of every target: per command and
// tool, the median wall time, CPU time and peak RSS, and the wall time
// against restic's (lower is better).
func startupTables(w io.Writer, r *Results) {
	for _, scenario := range r.scenarios() {
		for _, target := range r.Config.Targets {
			if !hasStartup(r, scenario, target) {
				continue
			}
			fmt.Fprintf(w, "\nStart-up cost, target %s (%s repository after its second night; median of %d; wall vs restic: lower is better)\n",
				target, scenario, r.Config.StartupRuns)
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "command\ttool\twall s\tCPU s\tpeak RSS MiB\twall vs restic\t")
			for _, c := range startupCommands {
				startupRows(tw, r, scenario, target, c)
			}
			tw.Flush()
		}
	}
}

func hasStartup(r *Results, scenario, target string) bool {
	for _, tool := range r.Config.Tools {
		if s := r.sessionIn(scenario, tool, target); s != nil && len(s.Startup) > 0 {
			return true
		}
	}
	return false
}

func startupRows(tw io.Writer, r *Results, scenario, target, command string) {
	restic := r.sessionIn(scenario, toolRestic, target).startupStep(command)
	for _, tool := range r.Config.Tools {
		s := r.sessionIn(scenario, tool, target)
		if s == nil {
			continue
		}
		st := s.startupStep(command)
		if st == nil {
			why := "not run"
			for _, x := range s.Startup {
				if x.Name == command && x.Error != "" {
					why = "failed: " + shorten(x.Error, 120)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t\n", command, tool, why)
			continue
		}
		vs := "-"
		if restic != nil && tool != toolRestic {
			vs = fx(ratio(st.WallSeconds, restic.WallSeconds))
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%.2f\t%.0f\t%s\t\n", command, tool, st.WallSeconds, st.CPUSeconds,
			float64(st.MaxRSSKiB)/1024, vs)
	}
}

// scenarios are the run's scenarios that every tool runs on every target
// (not xen, which has a section of its own); results written before there
// were scenarios hold the reference mix only.
func (r *Results) scenarios() []string {
	if len(r.Config.Scenarios) == 0 {
		return []string{scenarioMix}
	}
	var out []string
	for _, sc := range r.Config.Scenarios {
		if sc != scenarioXen {
			out = append(out, sc)
		}
	}
	return out
}
