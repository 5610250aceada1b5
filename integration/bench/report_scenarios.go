package main

import (
	"fmt"
	"math"
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

// scenarios are the run's scenarios; results written before there were
// scenarios hold the reference mix only.
func (r *Results) scenarios() []string {
	if len(r.Config.Scenarios) == 0 {
		return []string{scenarioMix}
	}
	return r.Config.Scenarios
}
