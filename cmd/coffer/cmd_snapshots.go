package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/localstate"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/uploader"
)

func newSnapshotsCmd(g *globals) *cobra.Command {
	var name string
	var writeReceipts bool
	cmd := &cobra.Command{
		Use:   "snapshots [--name NAME] [--write-receipts]",
		Short: "List snapshots",
		Long: `List snapshots, oldest first. Snapshots that cannot be read are skipped
with a warning (junk someone without the key put in the store, or damage).
When the repository no longer shows the newest snapshot this machine wrote
under a name, a warning names it: the store may be hiding newer snapshots.
--write-receipts stores the receipt (what a vault reads without keys: the
packs a snapshot needs) of every snapshot that has none: snapshots written
before receipts existed. A vault collects no garbage until each has one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			snaps, err := r.Snapshots(ctx, g.skippedSnapshot(r))
			if err != nil {
				return err
			}
			g.warnRollback(r, snaps, name)
			if writeReceipts {
				n, err := r.WriteMissingReceipts(ctx, snaps)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.stderr, "wrote %d receipts\n", n)
			}
			if g.json {
				out := []map[string]any{}
				for _, s := range snaps {
					if name != "" && s.Name != name {
						continue
					}
					out = append(out, map[string]any{"id": s.ID, "time": s.Time, "name": s.Name, "host": s.Host, "tags": s.Tags, "source": s.Source, "disks": s.Disks})
				}
				g.printJSON(out)
				return nil
			}
			return g.snapshotTable(snaps, name)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "only snapshots with this name")
	cmd.Flags().BoolVar(&writeReceipts, "write-receipts", false, "store the receipt of each snapshot that has none")
	return cmd
}

// snapshotTable prints snapshots as a table. Names, hosts and paths came
// from the store (another machine wrote them), so they are made
// terminal-safe.
func (g *globals) snapshotTable(snaps []*repo.SnapshotInfo, name string) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tNAME\tHOST\tSIZE\tSOURCE")
	for _, s := range snaps {
		if name != "" && s.Name != name {
			continue
		}
		var size int64
		for _, d := range s.Disks {
			size += d.Size
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID[:12], s.Time.Local().Format("2006-01-02 15:04:05"),
			termtext.Clean(s.Name), termtext.Clean(s.Host), humanBytes(size), termtext.Clean(s.Source.Path))
	}
	return tw.Flush()
}

// skippedSnapshot returns the warning for a snapshot that cannot be read:
// junk says who can remove it, damage says to run check.
func (g *globals) skippedSnapshot(r *repo.Repo) func(id string, err error) {
	return func(id string, err error) {
		hint := "run coffer check"
		if repo.IsForeign(err) {
			hint = r.RemovalHint(repo.SnapshotsPrefix + id)
		}
		fmt.Fprintf(g.stderr, "coffer: warning: skipping snapshot %s: %s; %s\n", termtext.Clean(id), termtext.Clean(err.Error()), termtext.Clean(hint))
	}
}

// findSnapshot resolves a snapshot reference like repo.FindSnapshot,
// warning about skipped snapshots and, for latest, about a repository that
// no longer shows the newest snapshot this machine wrote.
func (g *globals) findSnapshot(ctx context.Context, r *repo.Repo, ref, name string) (*repo.SnapshotInfo, error) {
	if ref != "latest" {
		return r.FindSnapshot(ctx, ref, name)
	}
	snaps, err := r.Snapshots(ctx, g.skippedSnapshot(r))
	if err != nil {
		return nil, err
	}
	g.warnRollback(r, snaps, name)
	return repo.Latest(snaps, name)
}

// warnRollback warns for each name ("" for all) whose newest snapshot
// written from this machine the repository no longer shows. The exit code
// is not changed: the snapshots shown are still good.
func (g *globals) warnRollback(r *repo.Repo, snaps []*repo.SnapshotInfo, name string) {
	dir := localstate.Dir(r.Config().ID)
	if dir == "" {
		return
	}
	rbs, err := localstate.Check(dir, snaps, name)
	if err != nil {
		fmt.Fprintf(g.stderr, "coffer: warning: cannot compare with the snapshots this machine wrote: %s\n", termtext.Clean(err.Error()))
		return
	}
	for _, rb := range rbs {
		fmt.Fprintf(g.stderr, "coffer: warning: %s\n", termtext.Clean(rb.String()))
	}
}

// rememberSnapshot records a snapshot this machine just wrote, so that a
// store that later hides it is noticed (warnRollback).
func (g *globals) rememberSnapshot(r *repo.Repo, res *uploader.Result) {
	dir := localstate.Dir(r.Config().ID)
	if dir == "" || g.exporting {
		return
	}
	if err := localstate.Record(dir, res.Snapshot.Name, res.SnapshotID, res.Snapshot.Time); err != nil {
		fmt.Fprintf(g.stderr, "coffer: warning: could not remember snapshot %s on this machine: %s\n", res.SnapshotID[:12], termtext.Clean(err.Error()))
	}
}
