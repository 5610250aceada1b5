package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/restore"
	"github.com/cofferhq/coffer/internal/xenrestore"
)

func newRestoreCmd(g *globals) *cobra.Command {
	var (
		name      string
		disk      int
		to        string
		format    string
		overwrite bool
		// overwriteDevice allows replacing the data on a block device.
		overwriteDevice bool
		noVerify        bool
		readBack        bool
		sync            bool
		workers         int
		delta           bool
		xen             xenFlags
	)
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT --to PATH",
		Short: "Restore a disk of a snapshot to an image file or a device",
		Long: `Restore one disk of a snapshot (an ID prefix, or "latest" with --name) to a
new image file (--format raw, the default; vhd: a dynamic VHD that XenServer,
Hyper-V and qemu take; qcow2: version 3, for KVM and qemu) or onto a block
device. A raw file is sparse where the disk was empty, and VHD and qcow2
allocate only what holds data; it is written under a temporary name beside --to and gets its
name only once verified, so a failed or interrupted restore leaves nothing
behind. On a device, the empty parts are zeroed; a device that holds data is
overwritten only with --overwrite-device. Every
64 KiB block is compared with the hash recorded at backup time, as it is
written (blocks shared by two chunks are read back from the output; with
--read-back, every block is), and then the whole-disk digest; a mismatch exits
non-zero.

With --delta, --to is an existing copy of the disk (an earlier restore, or
the disk a VM ran on) that is brought up to the snapshot in place: its
blocks are hashed on every core, only the chunks over blocks that differ are
downloaded, and what the snapshot has empty is cleared. A file is moved aside
(.NAME.coffer-delta) while it is updated and gets its name back once it
equals the snapshot; after a failure, running the delta restore again resumes
on it. A device is updated in place.

With --to xapi://HOST/SR, the VM of a XenServer snapshot is recreated in a
pool (with the --xen-* flags of backup --xen, or the config's xen: section):
a VDI per disk is created on the SR (its UUID or name) and uploaded with
xapi's sparse protocol, so empty parts never cross the wire, then the VM and
its VBDs come from the metadata recorded at backup, new UUIDs, halted. A
restore that fails removes what it made.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{Err: errors.New("restore needs exactly one SNAPSHOT (an ID prefix, or latest)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageError{Err: errors.New("restore needs --to PATH (or --to xapi://HOST/SR)")}
			}
			pool, toPool, err := xenrestore.ParseTarget(to)
			if err != nil {
				return usageError{Err: err}
			}
			if toPool && (delta || format != "raw" || overwrite || overwriteDevice || cmd.Flags().Changed("disk")) {
				return usageError{Err: errXapiFlags}
			}
			fm, err := restore.ParseFormat(format)
			if err != nil {
				return usageError{Err: fmt.Errorf("--format: %w", err)}
			}
			if delta && fm != restore.FormatRaw {
				return usageError{Err: errors.New("--delta updates a raw image or a device in place; --format vhd and qcow2 write new images")}
			}
			ctx := cmd.Context()
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			snap, err := g.findRestoreSnapshot(ctx, r, args[0], name)
			if err != nil {
				return err
			}
			if toPool {
				if err := g.loadRestoreIndex(ctx, r, snap); err != nil {
					return err
				}
				return g.restoreToPool(ctx, r, snap, pool, &xen)
			}
			if disk < 0 || disk >= len(snap.Disks) {
				return usageError{Err: fmt.Errorf("snapshot %s has %d disk(s); --disk %d does not exist", snap.ID[:12], len(snap.Disks), disk)}
			}
			if err := g.loadRestoreIndex(ctx, r, snap); err != nil {
				return err
			}
			// Packs that no intact index lists are looked for only if a
			// chunk is missing from the index (repo.Locate).
			if delta && (overwrite || overwriteDevice) {
				return usageError{Err: errors.New("--delta updates --to in place; --overwrite and --overwrite-device do not apply")}
			}
			opt := restore.Options{Overwrite: overwrite, OverwriteDevice: overwriteDevice, NoVerify: noVerify, ReadBack: readBack, Sync: sync, Workers: workers, Delta: delta, Format: fm}
			rs := restore.New(r, &snap.Disks[disk], opt)
			stop := g.showRestoreProgress(ctx, rs)
			res, err := rs.Run(ctx, to)
			stop()
			if err != nil {
				return err
			}
			g.restoreSummary(snap, disk, to, res)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "with latest: the newest snapshot of this name (VM); needed when the repository holds several")
	f.IntVar(&disk, "disk", 0, "which disk of the snapshot")
	f.StringVar(&to, "to", "", "output file (must not exist unless --overwrite), or a block device at least as large as the disk")
	f.StringVar(&format, "format", "raw", "output format: raw, vhd (dynamic, at most 2040 GiB) or qcow2")
	f.BoolVar(&overwrite, "overwrite", false, "replace an existing output file (only once the restored disk is verified)")
	f.BoolVar(&overwriteDevice, "overwrite-device", false, "restore onto a block device (--to /dev/...) even though it holds data")
	f.BoolVar(&noVerify, "no-verify", false, "skip comparing the output with the hashes and digest recorded at backup")
	f.BoolVar(&readBack, "read-back", false, "verify by reading every written block back from the output (slower; also catches a file system that loses a write)")
	f.IntVar(&workers, "workers", 0, "concurrent pack reads (default two per core)")
	addXenRestoreFlags(cmd, &xen)
	f.BoolVar(&delta, "delta", false, "update an existing copy of the disk at --to in place, downloading only the chunks whose blocks differ")
	f.BoolVar(&sync, "sync", false, "fsync the output before exiting (like cp, coffer otherwise leaves writeback to the kernel)")
	return cmd
}

// loadRestoreIndex loads the index to restore snap, which it refuses when
// snap needed a cancelled seed (naming the seed).
func (g *globals) loadRestoreIndex(ctx context.Context, r *repo.Repo, snap *repo.SnapshotInfo) error {
	if err := g.loadIndex(ctx, r); err != nil {
		return err
	}
	return g.lostSnapshotError(ctx, r, snap.ID)
}

// findRestoreSnapshot resolves the snapshot to restore. "latest" without a
// name is refused when the repository holds snapshots of several names
// (VMs): the newest of any of them is rarely the one meant.
func (g *globals) findRestoreSnapshot(ctx context.Context, r *repo.Repo, ref, name string) (*repo.SnapshotInfo, error) {
	if ref != "latest" || name != "" {
		return g.findSnapshot(ctx, r, ref, name)
	}
	all, err := r.Snapshots(ctx, g.skippedSnapshot(r))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range all {
		if !slices.Contains(names, s.Name) {
			names = append(names, s.Name)
		}
	}
	if len(names) > 1 {
		slices.Sort(names)
		return nil, usageError{Err: fmt.Errorf("the repository holds snapshots of %d names (%s); say which with --name NAME, or give a snapshot ID",
			len(names), strings.Join(names, ", "))}
	}
	g.warnRollback(r, all, name)
	return repo.Latest(all, "")
}

// showRestoreProgress shows a running restore's progress (showProgress).
func (g *globals) showRestoreProgress(ctx context.Context, rs *restore.Restorer) (stop func()) {
	return g.showProgress(ctx, "restore", rs.Progress().Size, func() progressSample {
		p := rs.Progress()
		return progressSample{done: p.Done, desc: fmt.Sprintf("restore (fetched %s)", humanBytes(p.Fetched)),
			json: map[string]any{"bytes_written": p.Written, "bytes_fetched": p.Fetched}}
	})
}

// restoreSummary reports a finished restore: which snapshot (ID, name,
// time) and disk went where, and how it was verified.
func (g *globals) restoreSummary(snap *repo.SnapshotInfo, disk int, to string, res *restore.Result) {
	secs := res.Duration.Seconds()
	if g.json {
		g.printJSON(map[string]any{
			"type": "summary", "snapshot_id": snap.ID, "name": snap.Name, "time": snap.Time.UTC().Format(time.RFC3339),
			"host": snap.Host, "disk": disk, "to": to, "size": res.Size,
			"bytes_written": res.Written, "bytes_fetched": res.Fetched, "bytes_reused": res.Reused, "chunks": res.Chunks,
			"verified": res.Verified, "digest": res.Digest, "store_requests": g.counting.Requests(), "format": res.Format, "image_size": res.ImageSize,
			"duration_seconds": secs,
		})
		return
	}
	g.say("restored snapshot %s of %s (taken %s) disk %d to %s", snap.ID[:12], snap.Name, snap.Time.Local().Format("2006-01-02 15:04:05 MST"), disk, to)
	rest := "the rest left as holes"
	if res.Device {
		rest = "the rest zeroed"
	}
	g.say("  disk      %s, wrote %s (%s), fetched %s", humanBytes(res.Size), humanBytes(res.Written), rest, humanBytes(res.Fetched))
	if res.ImageSize != 0 && res.ImageSize != res.Size {
		g.say("  image     %s holds %d bytes: the disk's %d rounded up to whole 512-byte sectors, the rest zeros", res.Format, res.ImageSize, res.Size)
	}
	if res.Reused > 0 {
		g.say("  delta     %s of the disk were there already and not downloaded", humanBytes(res.Reused))
	}
	if res.Verified {
		g.say("  verified  every block matches the digest recorded at backup (%s...)", res.Digest[:16])
	} else {
		g.say("  NOT verified (--no-verify)")
	}
	g.say("  time      %.1fs, %s/s", secs, humanBytes(int64(float64(res.Size)/max(secs, 1e-9))))
}
