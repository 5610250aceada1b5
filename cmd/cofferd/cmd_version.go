package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/buildinfo"
)

type versionOut struct {
	Name string `json:"name"`
	buildinfo.Build
}

// newVersionCmd is `cofferd version`: it needs no store.
func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print cofferd's version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b := buildinfo.Info()
			if g.json {
				return g.printJSON(versionOut{Name: "cofferd", Build: b})
			}
			fmt.Fprintf(g.stdout, "cofferd %s\n", b)
			return nil
		},
	}
}
