package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

type initOut struct {
	Store   string `json:"store"`
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// newInitCmd is `cofferd init`: the one command (with serve --init) that
// makes a vault, so that a mistyped --store never turns into an empty one.
func newInitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create a vault in --store (the directory or bucket, and vault/format)",
		Long: `Create a vault in the store --store names (env COFFER_STORE).

It makes the directory or bucket when missing, checks that the store honours
conditional writes (the vault's state needs them) and writes vault/format.
Every other command exits 10 on a store without a vault; 'cofferd serve
--init' does what init does when there is none. A store that holds a vault
already is left alone (exit 1).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			data, _, _, err := g.openState(c.Context())
			if err == nil {
				loc := data.Location()
				data.Close()
				return vaultapi.Errorf(vaultapi.CodeExists, "a vault exists already at %s; nothing changed", loc)
			}
			var nv *noVaultError
			if !errors.As(err, &nv) {
				return err
			}
			g.createVault = true
			data, _, _, err = g.openState(c.Context())
			if err != nil {
				return err
			}
			defer data.Close()
			if g.json {
				return g.printJSON(initOut{Store: data.Location(), Format: "cofferd-vault", Version: 1})
			}
			fmt.Fprintf(g.stdout, "created a vault at %s\nnext: cofferd tenant create NAME, then cofferd serve\n", data.Location())
			return nil
		},
	}
}
