package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/buildinfo"
)

// versionOut is `coffer version --json`: the same shape as cofferd's.
type versionOut struct {
	Type string `json:"type"`
	Name string `json:"name"`
	buildinfo.Build
}

// newVersionCmd is `coffer version`: it needs no repository.
func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print coffer's version, commit and Go version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b := buildinfo.Info()
			if g.json {
				g.printJSON(versionOut{Type: "version", Name: "coffer", Build: b})
				return nil
			}
			fmt.Fprintf(g.stdout, "coffer %s\n", b)
			return nil
		},
	}
}
