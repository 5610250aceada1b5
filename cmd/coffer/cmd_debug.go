package main

import (
	"runtime"

	"github.com/spf13/cobra"
)

// newDebugCmd holds commands for developers and the benchmark; hidden from
// help.
func newDebugCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "debug", Short: "Developer diagnostics", Hidden: true}
	cmd.AddCommand(&cobra.Command{
		Use:   "index-memory",
		Short: "Load the index and report the heap it occupies per entry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			if err := g.loadIndex(ctx, r); err != nil {
				return err
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			n := r.Index.Len()
			heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			per := 0.0
			if n > 0 {
				per = float64(heap) / float64(n)
			}
			runtime.KeepAlive(r)
			g.printJSON(map[string]any{"type": "index_memory", "entries": n, "packs": r.Index.Packs(), "heap_bytes": heap, "bytes_per_entry": per})
			return nil
		},
	})
	return cmd
}
