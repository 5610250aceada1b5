package main

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/testutil/testfile"
)

// Start-up rows: commands whose cost is the tool's fixed cost (starting,
// opening the repository, unlocking the key, loading the index, writing a
// snapshot), measured on the session's repository after its second night.
const (
	startupSnapshots = "snapshots"    // list snapshots: no data
	startupBackup    = "tiny backup"  // back up a new 1 MiB image
	startupRestore   = "tiny restore" // restore that image
)

var startupCommands = []string{startupSnapshots, startupBackup, startupRestore}

// tinySize is the tiny image's size: one chunk or so for every tool.
const tinySize = 1 << 20

// startup measures the start-up rows of a session, cfg.StartupRuns times
// each, and records the run with the median wall time of each command. Every
// run backs up a tiny image with new content, so that each backup stores
// data and a snapshot, and restores it. The tool runs as a user would run
// it: with the session's configuration and caches. Failures are recorded
// in the row and do not end the session.
func (b *bench) startup(ctx context.Context, s *Session, drv driver, bin string) {
	runs := map[string][]*Step{}
	tiny := filepath.Join(b.cfg.Workdir, "live", "tiny-"+s.key()+".img")
	outDir := filepath.Join(s.dir, "tiny-restore")
	defer os.Remove(tiny)
	defer os.RemoveAll(outDir)
	for i := range b.cfg.StartupRuns {
		if ctx.Err() != nil {
			return
		}
		if err := diskgen.Generate(tiny, tinySize, b.cfg.Seed<<8+uint64(i), diskgen.Options{Mix: &diskgen.Mix{Random: 1}}); err != nil {
			b.logf("%s: start-up: %v", s.key(), err)
			return
		}
		for _, st := range b.startupRun(ctx, s, drv, bin, tiny, outDir, i) {
			runs[st.Name] = append(runs[st.Name], st)
		}
	}
	for _, name := range startupCommands {
		if st := medianStep(runs[name]); st != nil {
			s.Startup = append(s.Startup, st)
			b.logf("%s: start-up: %s %.2fs wall, %.2fs CPU", s.key(), name, st.WallSeconds, st.CPUSeconds)
		}
	}
}

// startupRun runs each start-up command once.
func (b *bench) startupRun(ctx context.Context, s *Session, drv driver, bin, tiny, outDir string, i int) []*Step {
	step := func(name string, argv []string, bytes int64) (*Step, []byte, error) {
		st, out, err := b.quickStep(ctx, s, fmt.Sprintf("startup-%s-%d", name, i+1), argv, bytes)
		st.Name = name
		return st, out, err
	}
	list, _, _ := step(startupSnapshots, drv.snapshots(s, bin), 0)
	backup, out, err := step(startupBackup, drv.backup(s, bin, tiny, "tiny"), tinySize)
	ref := backupRef{path: tiny, name: "tiny"}
	if err == nil {
		_, ref.snapshot, err = drv.parseBackup(out)
	}
	if err != nil {
		backup.Error = err.Error()
		return []*Step{list, backup}
	}
	if err := cleanDir(outDir); err != nil {
		backup.Error = err.Error()
		return []*Step{list, backup}
	}
	argv, restored := drv.restore(s, bin, ref, outDir)
	restore, _, err := step(startupRestore, argv, tinySize)
	if err == nil {
		same, cerr := testfile.Equal(restored, tiny)
		restore.Verified = &same
		if cerr != nil || !same {
			restore.Error = fmt.Sprintf("restored %s differs from the tiny image (%v)", restored, cerr)
		}
	}
	return []*Step{list, backup, restore}
}

// quickStep runs and measures a short command without dropping the page
// cache (a user's second command finds the binary and the repository's
// metadata cached too): it flushes earlier writes and waits, for at most
// b.quietLimit, until the machine is quiet.
func (b *bench) quickStep(ctx context.Context, s *Session, name string, argv []string, imageBytes int64) (*Step, []byte, error) {
	st := &Step{Name: name, Argv: argv, ImageBytes: imageBytes, Log: b.logPath(s, name)}
	syscall.Sync()
	if b.quietLimit > 0 {
		waitQuiet(quietWindow, b.quietLimit)
	}
	out, u, err := b.exec(ctx, s, name, argv)
	st.WallSeconds, st.UserSeconds, st.SysSeconds = u.wall.Seconds(), u.user.Seconds(), u.sys.Seconds()
	st.CPUSeconds = st.UserSeconds + st.SysSeconds
	st.MaxRSSKiB = u.maxRSSKiB
	if err != nil {
		st.Error = err.Error()
	}
	return st, out, err
}

// medianStep returns the successful run with the median wall time, or the
// first failed run when none succeeded, or nil.
func medianStep(runs []*Step) *Step {
	var ok []*Step
	for _, r := range runs {
		if r.Error == "" {
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		if len(runs) > 0 {
			return runs[0]
		}
		return nil
	}
	slices.SortStableFunc(ok, func(a, b *Step) int { return cmp.Compare(a.WallSeconds, b.WallSeconds) })
	st := ok[len(ok)/2]
	if len(runs) > 1 {
		st.Runs = nil
		for _, r := range runs {
			st.Runs = append(st.Runs, RunFigures{WallSeconds: r.WallSeconds, CPUSeconds: r.CPUSeconds, MaxRSSKiB: r.MaxRSSKiB, Log: r.Log})
		}
	}
	return st
}

// cleanDir makes dir an empty directory.
func cleanDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o755)
}
