package main

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/check"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/uploader"
)

func newCheckCmd(g *globals) *cobra.Command {
	var readData bool
	cmd := &cobra.Command{
		Use:   "check [--read-data]",
		Short: "Verify the repository's structure, and with --read-data every byte",
		Long: `Verify key slots, index files, pack headers and snapshots, and that every
chunk a snapshot needs is indexed and stored. With --read-data, download every
pack and verify that every blob decrypts and hashes to its ID. Every problem
names the object it was found in; any error exits 1.

Objects that are not this repository's (junk someone without the key put in
the store: their bytes match their names but do not open with the key) are
reported once each as "foreign", with who can remove them, and do not fail
the check. While a backup of this repository runs on this machine, packs it
has uploaded but not indexed yet are counted, not warned about.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			running := false
			if dir := stateDir(r); dir != "" {
				running = uploader.RunInProgress(dir)
			}
			var checked atomic.Int64
			stop := func() {}
			opt := check.Options{ReadData: readData, BackupRunning: running,
				PackDone: func(size int64) { checked.Add(size) },
				PacksFound: func(n int, size int64) {
					stop = g.showProgress(ctx, "check", size, func() progressSample {
						return progressSample{done: checked.Load(), desc: fmt.Sprintf("check (%d packs)", n),
							json: map[string]any{"what": "check", "packs": n}}
					})
				}}
			rep, err := check.Run(ctx, r, opt)
			stop()
			if err != nil {
				return err
			}
			if g.json {
				g.printJSON(map[string]any{"type": "check", "ok": rep.Errors() == 0, "report": rep})
			} else {
				g.checkSummary(rep, readData)
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

// checkSummary prints a check's findings for people. Messages quote
// object names and text from the store: terminal-safe.
func (g *globals) checkSummary(rep *check.Report, readData bool) {
	for _, p := range rep.Problems {
		kind := "error"
		switch {
		case p.Foreign:
			kind = "foreign"
		case p.Warning:
			kind = "warning"
		}
		msg := p.Message
		if !strings.HasPrefix(msg, p.Object) {
			msg = p.Object + ": " + msg
		}
		fmt.Fprintf(g.stdout, "%s: %s\n", kind, termtext.Clean(msg))
	}
	g.say("checked %d key slots, %d index files, %d packs, %d snapshots", rep.Keys, rep.IndexFiles, rep.Packs, rep.Snapshots)
	if rep.Unindexed > 0 {
		g.say("%d packs are not indexed yet: a backup on this machine is running and indexes them as it goes; run check again after it", rep.Unindexed)
	}
	if readData {
		g.say("read %s, verified %d blobs", humanBytes(rep.ReadBytes), rep.Blobs)
	}
}
