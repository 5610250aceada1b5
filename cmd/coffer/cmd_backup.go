package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/agent"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
)

func newBackupCmd(g *globals) *cobra.Command {
	var (
		image     string
		name      string
		tags      []string
		uploaders int
		limit     string
		xen       xenFlags
	)
	cmd := &cobra.Command{
		Use:   "backup (--image PATH [--name NAME] | --xen URL (--vm NAME|UUID ... | --all))",
		Short: "Back up a raw disk image, a block device, or the VMs of a XenServer pool",
		Long: `Back up a raw disk image file or block device. Holes and all-zero blocks
are skipped, data is split into content-defined chunks, and only chunks the
repository does not hold yet are compressed, encrypted and uploaded. The
snapshot becomes visible only once everything it needs is stored; an
interrupted backup resumes without uploading stored packs again.

With --xen, back up VMs of a XenServer / XCP-ng pool: each VM is snapshotted,
its metadata recorded, and every disk (never a CD) read over NBD into one
Coffer snapshot per VM; after the first night only the blocks changed since
the last one are read (changed block tracking), or the whole disk when that
cannot be, with the reason. One VM that fails does not stop the others
(exit code 3). The config file's xen: section holds the same settings.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			conf, err := g.loadConfig()
			if err != nil {
				return err
			}
			if err := g.limitUpload(limit); err != nil {
				return err
			}
			if xen.wantsXen(conf.Xen, image) {
				if image != "" {
					return usageError{Err: errors.New("back up either --image or --xen, not both")}
				}
				if name != "" {
					return usageError{Err: errors.New("--name is for --image: the snapshots of VMs are named after the VMs")}
				}
				return g.backupXen(cmd.Context(), conf, &xen, tags, uploaders)
			}
			if image == "" {
				return usageError{Err: errors.New("backup needs --image PATH, or --xen URL with --vm NAME or --all")}
			}
			if name == "" {
				name = filepath.Base(image)
			}
			ctx := cmd.Context()
			src, err := source.OpenImage(image)
			if err != nil {
				return err
			}
			defer src.Close()
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			// The summary's time runs from here: loading the index and
			// waiting for the store count, the passphrase prompt does not.
			start := clock.Start()
			if err := g.loadIndex(ctx, r); err != nil {
				return err
			}
			if err := g.watchSeeds(ctx, r); err != nil {
				return err
			}
			res, err := g.backupImage(ctx, r, src, uploader.Options{Name: name, Tags: tags, Uploaders: uploaders})
			if err != nil {
				return err
			}
			res.Duration = start.Elapsed()
			g.backupSummary(res)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&image, "image", "", "raw disk image file or block device to back up")
	f.StringVar(&name, "name", "", "snapshot name (default: the image's file name)")
	f.StringSliceVar(&tags, "tag", nil, "label the snapshot (repeatable)")
	f.IntVar(&uploaders, "uploaders", 0, "concurrent pack uploads (default 4); to S3 each holds a 16 MiB pack in memory")
	f.StringVar(&limit, "limit-upload", "", "most bytes per second sent to the repository, like 20Mbit or 5MiB (default: no limit)")
	addXenFlags(cmd, &xen)
	return cmd
}

// limitUpload sets the upload limit of --limit-upload RATE.
func (g *globals) limitUpload(rate string) error {
	r, err := agent.ParseRate(rate)
	if err != nil {
		return usageError{Err: fmt.Errorf("--limit-upload: %w", err)}
	}
	if r > 0 {
		g.bandwidth = store.NewBandwidth(nil, store.ConstantLimits(store.Limits{Put: r}))
	}
	return nil
}

// backupImage backs up src (an image file or device) into r (its index
// loaded) as o says, showing progress, and remembers the snapshot on this
// machine. coffer backup --image, coffer agent's images and coffer seed
// export (its own o.StateDir) use it.
func (g *globals) backupImage(ctx context.Context, r *repo.Repo, src source.Source, o uploader.Options) (*uploader.Result, error) {
	if o.StateDir == "" {
		o.StateDir = stateDir(r)
	}
	o.CacheDir = cacheDir(r)
	b, err := uploader.New(r, src, o)
	if err != nil {
		return nil, usageError{Err: err}
	}
	stop := g.showBackupProgress(ctx, b)
	res, err := b.Run(ctx)
	stop()
	if err != nil {
		return nil, quotaHint(err)
	}
	g.rememberSnapshot(r, res)
	return res, nil
}

// showBackupProgress shows a running backup's progress (showProgress).
func (g *globals) showBackupProgress(ctx context.Context, b *uploader.Backup) (stop func()) {
	return g.showProgress(ctx, "backup", b.Progress().Size, func() progressSample {
		p := b.Progress()
		return progressSample{done: p.Done, desc: fmt.Sprintf("backup (new %s)", humanBytes(p.NewBytes)),
			json: map[string]any{"bytes_read": p.Read, "chunks": p.Chunks, "new_chunks": p.NewChunks,
				"bytes_new": p.NewBytes, "bytes_stored_new": p.StoredBytes, "packs": p.Packs}}
	})
}

func (g *globals) backupSummary(res *uploader.Result) {
	secs := res.Duration.Seconds()
	dedup := 0.0
	if res.Chunks > 0 {
		dedup = 1 - float64(res.NewChunks)/float64(res.Chunks)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(g.stderr, "coffer: warning: %s\n", w)
	}
	if g.json {
		g.printJSON(map[string]any{
			"type": "summary", "snapshot_id": res.SnapshotID, "name": res.Snapshot.Name,
			"size": res.Size, "bytes_read": res.Read, "bytes_data": res.Snapshot.Disks[0].Stats.DataBytes,
			"chunks": res.Chunks, "new_chunks": res.NewChunks, "bytes_new": res.NewBytes,
			"bytes_stored_new": res.StoredBytes, "packs_new": res.Packs, "orphan_scan": res.OrphanScan, "recovered_packs": res.RecoveredPacks,
			"temp_files_removed": res.TempRemoved, "temp_bytes_removed": res.TempRemovedBytes,
			"store_requests": g.counting.Requests(), "duration_seconds": secs,
			"store_wait_seconds": res.StoreWait.Seconds(), "retry_wait_seconds": g.retry.Waited().Seconds(),
			"digest": res.Snapshot.Disks[0].Digest,
		})
		return
	}
	g.say("snapshot %s saved (%s)", res.SnapshotID[:12], res.Snapshot.Name)
	g.say("  disk      %s, read %s (holes and zero blocks skipped: %s)", humanBytes(res.Size), humanBytes(res.Read), humanBytes(res.Size-res.Snapshot.Disks[0].Stats.DataBytes))
	g.say("  chunks    %d, new %d (%.1f%% deduplicated)", res.Chunks, res.NewChunks, 100*dedup)
	g.say("  new data  %s, stored %s after compression and encryption in %d packs", humanBytes(res.NewBytes), humanBytes(res.StoredBytes), res.Packs)
	if res.RecoveredPacks > 0 {
		g.say("  resumed   %d packs from an interrupted backup were reused", res.RecoveredPacks)
	}
	if res.TempRemoved > 0 {
		g.say("  cleaned   %d temporary files (%s) an interrupted backup left", res.TempRemoved, humanBytes(res.TempRemovedBytes))
	}
	g.say("  time      %.1fs, %s/s", secs, humanBytes(int64(float64(res.Size)/max(secs, 1e-9))))
	if w := g.retry.Waited(); w > 0 {
		g.say("  note      %.1fs of that was spent waiting to retry the store (failures, a vault that was away or throttled)", w.Seconds())
	}
	if w := res.StoreWait.Seconds(); w > secs/10 {
		g.say("  note      readers waited %.1fs for uploads: the store, not the CPU, set the pace (--uploaders raises concurrency)", w)
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// stateDir is where backups of repository r keep this machine's run marks
// (uploader.Options.StateDir): $XDG_CACHE_HOME/coffer/runs/<repository ID>,
// since losing it costs only one listing of the repository's packs. Empty
// (list every run) when there is no cache directory.
// cacheDir is where the agent keeps what it may remember of a repository
// between runs (the map cache for receipts); "" when there is no cache
// directory.
func cacheDir(r *repo.Repo) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "coffer", "cache", r.Config().ID)
}

func stateDir(r *repo.Repo) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "coffer", "runs", r.Config().ID)
}
