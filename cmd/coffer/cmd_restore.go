package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/restore"
)

func newRestoreCmd(g *globals) *cobra.Command {
	var (
		name      string
		disk      int
		to        string
		format    string
		overwrite bool
		noVerify  bool
		readBack  bool
		sync      bool
		workers   int
	)
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT --to PATH",
		Short: "Restore a disk of a snapshot to a raw image file",
		Long: `Restore one disk of a snapshot (an ID prefix, or "latest" with --name) to a
new raw image file. The output is sparse where the disk was empty. Every
64 KiB block is compared with the hash recorded at backup time, as it is
written (blocks shared by two chunks are read back from the output; with
--read-back, every block is), and then the whole-disk digest; a mismatch exits
non-zero.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{Err: errors.New("restore needs exactly one SNAPSHOT (an ID prefix, or latest)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageError{Err: errors.New("restore needs --to PATH")}
			}
			if format != "raw" {
				return usageError{Err: fmt.Errorf("--format %s is not supported yet; use raw", format)}
			}
			ctx := cmd.Context()
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			snap, err := g.findSnapshot(ctx, r, args[0], name)
			if err != nil {
				return err
			}
			if disk < 0 || disk >= len(snap.Disks) {
				return usageError{Err: fmt.Errorf("snapshot %s has %d disk(s); --disk %d does not exist", snap.ID[:12], len(snap.Disks), disk)}
			}
			if err := g.loadIndex(ctx, r); err != nil {
				return err
			}
			// Packs that no intact index lists are looked for only if a
			// chunk is missing from the index (repo.Locate).
			res, err := restore.New(r, &snap.Disks[disk], restore.Options{Overwrite: overwrite, NoVerify: noVerify, ReadBack: readBack, Sync: sync, Workers: workers}).Run(ctx, to)
			if err != nil {
				return err
			}
			secs := res.Duration.Seconds()
			if g.json {
				g.printJSON(map[string]any{
					"type": "summary", "snapshot_id": snap.ID, "disk": disk, "to": to, "size": res.Size,
					"bytes_written": res.Written, "bytes_fetched": res.Fetched, "chunks": res.Chunks,
					"verified": res.Verified, "digest": res.Digest, "store_requests": g.counting.Requests(),
					"duration_seconds": secs,
				})
				return nil
			}
			g.say("restored snapshot %s disk %d to %s", snap.ID[:12], disk, to)
			g.say("  disk      %s, wrote %s (the rest left as holes), fetched %s", humanBytes(res.Size), humanBytes(res.Written), humanBytes(res.Fetched))
			if res.Verified {
				g.say("  verified  every block matches the digest recorded at backup (%s...)", res.Digest[:16])
			} else {
				g.say("  NOT verified (--no-verify)")
			}
			g.say("  time      %.1fs, %s/s", secs, humanBytes(int64(float64(res.Size)/max(secs, 1e-9))))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "with latest: the newest snapshot of this name")
	f.IntVar(&disk, "disk", 0, "which disk of the snapshot")
	f.StringVar(&to, "to", "", "output file (must not exist unless --overwrite)")
	f.StringVar(&format, "format", "raw", "output format (raw; vhd and qcow2 come later)")
	f.BoolVar(&overwrite, "overwrite", false, "replace an existing output file")
	f.BoolVar(&noVerify, "no-verify", false, "skip comparing the output with the hashes and digest recorded at backup")
	f.BoolVar(&readBack, "read-back", false, "verify by reading every written block back from the output (slower; also catches a file system that loses a write)")
	f.IntVar(&workers, "workers", 0, "concurrent pack reads (default two per core)")
	f.BoolVar(&sync, "sync", false, "fsync the output before exiting (like cp, coffer otherwise leaves writeback to the kernel)")
	return cmd
}
