package drill

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/restore"
	"github.com/cofferhq/coffer/internal/termtext"
)

// How a drill picks the snapshot of a VM.
const (
	PickNewest = "newest"
	PickRandom = "random" // any snapshot the repository keeps (within retention)
)

// ByVM groups snapshots (oldest first, as repo.Snapshots returns them) by
// name, names in order; with name set, only that VM.
func ByVM(snaps []*repo.SnapshotInfo, name string) (names []string, byName map[string][]*repo.SnapshotInfo) {
	byName = map[string][]*repo.SnapshotInfo{}
	for _, s := range snaps {
		if name != "" && s.Name != name {
			continue
		}
		if byName[s.Name] == nil {
			names = append(names, s.Name)
		}
		byName[s.Name] = append(byName[s.Name], s)
	}
	slices.Sort(names)
	return names, byName
}

// Pick chooses the snapshot to drill among one VM's snapshots (oldest
// first): the newest, or with PickRandom one drawn with rng.
func Pick(snaps []*repo.SnapshotInfo, how string, rng *rand.Rand) (*repo.SnapshotInfo, error) {
	if len(snaps) == 0 {
		return nil, errors.New("no snapshot to drill")
	}
	switch how {
	case PickNewest, "":
		return snaps[len(snaps)-1], nil
	case PickRandom:
		return snaps[rng.IntN(len(snaps))], nil
	}
	return nil, fmt.Errorf("--pick %q: want newest or random", how)
}

// Options say how to run a drill.
type Options struct {
	// Clock times the drill: the recovery time achieved is the time from
	// the first disk's start to the last disk's check.
	Clock clock.Clock
	// Scratch is a directory to restore the disks into (each removed once
	// checked); empty: verify-only, nothing written.
	Scratch string
	// Objective is the recovery time objective; 0: none.
	Objective time.Duration
	Pick      string // recorded in the evidence; PickNewest when empty
	RunBy     string // ByVault or ByAgent
	Workers   int    // restore.Options.Workers
}

// Run drills snapshot snap of repository r (its index loaded): each disk is
// restored verify-only or into scratch space and checked against the
// recorded digests. It always returns evidence; a failure is its result.
func Run(ctx context.Context, r *repo.Repo, snap *repo.SnapshotInfo, opt Options) *Evidence {
	clk := clock.Or(opt.Clock)
	// Names come from the repository: shown as they are when clean and
	// short, escaped and cut otherwise, so that the evidence always
	// validates.
	e := &Evidence{Version: Version, RunBy: opt.RunBy, VM: termtext.Clip(snap.Name, maxText-1), Host: termtext.Clip(snap.Host, maxText-1), SnapshotID: snap.ID,
		SnapshotTime: snap.Time.UTC(), Pick: opt.Pick, Target: TargetVerifyOnly, Disks: []Disk{}}
	if e.Pick == "" {
		e.Pick = PickNewest
	}
	if opt.Scratch != "" {
		e.Target = termtext.Clip(ScratchTarget(opt.Scratch), maxText-1)
	}
	started := clk.Now()
	var err error
	for i := range snap.Disks {
		d := &snap.Disks[i]
		de := Disk{Index: d.Index, Size: d.Size, Digest: d.Digest}
		res, derr := drillDisk(ctx, r, snap, i, opt)
		if res != nil {
			de.Fetched, de.Verified = res.Fetched, res.Verified
		}
		e.Disks = append(e.Disks, de)
		e.Size += d.Size
		e.Fetched += de.Fetched
		if derr != nil {
			err = fmt.Errorf("disk %d: %w", d.Index, derr)
			break
		}
	}
	e.finish(started, clk.Now(), opt.Objective, err)
	return e
}

// drillDisk restores disk i of snap verify-only or into scratch space.
func drillDisk(ctx context.Context, r *repo.Repo, snap *repo.SnapshotInfo, i int, opt Options) (*restore.Result, error) {
	rs := restore.New(r, &snap.Disks[i], restore.Options{Workers: opt.Workers, ReadBack: opt.Scratch != ""})
	if opt.Scratch == "" {
		return rs.Verify(ctx)
	}
	path := filepath.Join(opt.Scratch, fmt.Sprintf("coffer-drill-%.12s-disk%d.img", snap.ID, snap.Disks[i].Index))
	res, err := rs.Run(ctx, path)
	if rerr := os.Remove(path); err == nil && rerr != nil {
		err = fmt.Errorf("removing the scratch copy %s: %w", path, rerr)
	}
	return res, err
}
