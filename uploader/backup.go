package uploader

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/uploader/source"
)

// Options tune a backup of one image.
type Options struct {
	Name      string      // snapshot name; required
	Tags      []string    // optional labels
	Workers   int         // region workers; default GOMAXPROCS
	Uploaders int         // concurrent pack uploads; default 4
	Clock     clock.Clock // the snapshot's time; default the wall clock
	// StateDir holds this machine's run marks for the repository (see
	// runmark.go): with it, a backup lists the repository's packs only
	// after one that did not end cleanly. Empty: list every time.
	StateDir string
	// CacheDir keeps what this machine may remember of the repository
	// between runs (the packs of each region map, for receipts). Empty:
	// nothing is kept.
	CacheDir string
}

func (o Options) session() SessionOptions {
	return SessionOptions{Workers: o.Workers, Uploaders: o.Uploaders, Clock: o.Clock, StateDir: o.StateDir, CacheDir: o.CacheDir}
}

// Progress is a consistent-enough view of a running backup, for progress
// output. All byte counts are of the disk's logical bytes unless named
// otherwise.
type Progress struct {
	Size        int64 // disk size
	Done        int64 // bytes of finished regions
	Read        int64 // bytes read from the source (holes are not read)
	Chunks      int64
	NewChunks   int64
	NewBytes    int64 // plaintext bytes of new chunks
	StoredBytes int64 // bytes of packs uploaded
	Packs       int64
	// StoreWait is how long the readers waited for uploads to make room.
	StoreWait time.Duration
}

// Result summarises a finished backup.
type Result struct {
	SnapshotID string
	Snapshot   *manifest.Snapshot
	Progress
	SessionInfo
	Duration time.Duration
}

// Backup is one run of the pipeline over one image: a session with one
// disk and one snapshot.
type Backup struct {
	s   *Session
	src source.Source
	opt Options
	c   DiskCounters
}

// New prepares a backup of src into r. The repository's index must be
// loaded.
func New(r *repo.Repo, src source.Source, opt Options) (*Backup, error) {
	if err := manifest.ValidName(opt.Name); err != nil {
		return nil, fmt.Errorf("snapshot name: %v", err)
	}
	return &Backup{s: newSession(r, opt.session()), src: src, opt: opt}, nil
}

// Progress returns the current counters.
func (b *Backup) Progress() Progress {
	stored, packs, waited := b.s.stored()
	c := &b.c
	return Progress{
		Size: b.src.Size(), Done: c.Done.Load(), Read: c.Read.Load(),
		Chunks: c.Chunks.Load(), NewChunks: c.NewChunks.Load(), NewBytes: c.NewBytes.Load(),
		StoredBytes: stored, Packs: packs, StoreWait: time.Duration(waited),
	}
}

// Run backs the source up and writes the snapshot. Nothing is visible as a
// snapshot unless Run returns without error.
func (b *Backup) Run(ctx context.Context) (*Result, error) {
	start := clock.Start()
	if err := b.s.start(ctx); err != nil {
		return nil, err
	}
	disk, err := b.s.BackupDisk(ctx, DiskJob{Source: b.src, Index: 0, Name: "disk0", Counters: &b.c})
	if err != nil {
		b.s.endAfter(ctx)
		return nil, err
	}
	host, _ := os.Hostname()
	snap := &manifest.Snapshot{
		Version: manifest.SnapshotVersion,
		Time:    b.s.opt.Clock.Now().UTC(),
		Host:    host,
		Name:    b.opt.Name,
		Tags:    b.opt.Tags,
		Source:  manifest.Source{Kind: "image", Path: b.src.Path()},
		Disks:   []manifest.Disk{disk},
	}
	id, err := b.s.Commit(ctx, snap)
	if err != nil {
		b.s.endAfter(ctx)
		return nil, err
	}
	if err := b.s.Close(ctx); err != nil {
		return nil, err
	}
	return &Result{SnapshotID: id, Snapshot: snap, Progress: b.Progress(), SessionInfo: b.s.Info(), Duration: start.Elapsed()}, nil
}
