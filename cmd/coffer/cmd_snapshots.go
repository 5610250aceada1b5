package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newSnapshotsCmd(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "snapshots [--name NAME]",
		Short: "List snapshots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			snaps, err := r.Snapshots(ctx, func(id string, err error) {
				fmt.Fprintf(g.stderr, "coffer: skipping snapshot %s: %v\n", id, err)
			})
			if err != nil {
				return err
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
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID[:12], s.Time.Local().Format("2006-01-02 15:04:05"), s.Name, s.Host, humanBytes(size), s.Source.Path)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "only snapshots with this name")
	return cmd
}
