package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/check"
)

func newCheckCmd(g *globals) *cobra.Command {
	var readData bool
	cmd := &cobra.Command{
		Use:   "check [--read-data]",
		Short: "Verify the repository's structure, and with --read-data every byte",
		Long: `Verify key slots, index files, pack headers and snapshots, and that every
chunk a snapshot needs is indexed and stored. With --read-data, download every
pack and verify that every blob decrypts and hashes to its ID. Every problem
names the object it was found in; any error exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			rep, err := check.Run(ctx, r, check.Options{ReadData: readData})
			if err != nil {
				return err
			}
			if g.json {
				g.printJSON(map[string]any{"type": "check", "ok": rep.Errors() == 0, "report": rep})
			} else {
				for _, p := range rep.Problems {
					kind := "error"
					if p.Warning {
						kind = "warning"
					}
					msg := p.Message
					if !strings.HasPrefix(msg, p.Object) {
						msg = p.Object + ": " + msg
					}
					fmt.Fprintf(g.stdout, "%s: %s\n", kind, msg)
				}
				g.say("checked %d key slots, %d index files, %d packs, %d snapshots", rep.Keys, rep.IndexFiles, rep.Packs, rep.Snapshots)
				if readData {
					g.say("read %s, verified %d blobs", humanBytes(rep.ReadBytes), rep.Blobs)
				}
			}
			if n := rep.Errors(); n > 0 {
				return fmt.Errorf("check found %d error(s); see above", n)
			}
			g.say("no errors found")
			return nil
		},
	}
	cmd.Flags().BoolVar(&readData, "read-data", false, "download and verify every blob")
	return cmd
}
