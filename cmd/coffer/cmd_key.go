package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
)

func newKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage the repository's key slots",
	}
	var newFile string
	passwd := &cobra.Command{
		Use:   "passwd",
		Short: "Change the passphrase (re-wraps the master key; data is untouched)",
		Long: `Add a key slot for the new passphrase (COFFER_NEW_PASSWORD,
--new-password-file, or a prompt) and remove the slot the current passphrase
opened. The master key, and so every stored object, stays the same.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			pw, err := readSecret("COFFER_NEW_PASSWORD", newFile, "New passphrase: ", true, g.stderr)
			if err != nil {
				return err
			}
			name, err := r.AddPassphraseSlot(ctx, pw)
			if err != nil {
				return err
			}
			if old := r.OpenedSlot(); old != "" && old != name {
				err := r.RemoveSlot(ctx, old)
				if errors.Is(err, store.ErrDenied) && vaultURL(r.Store().Location()) != nil {
					// Agents cannot delete through a vault.
					fmt.Fprintf(g.stderr, "coffer: warning: the vault is append-only, so the old key slot %s stays and the OLD passphrase still opens the repository; ask your provider to remove that slot\n", old[len(repo.KeysPrefix):][:12])
					err = nil
				}
				if err != nil {
					return fmt.Errorf("the new passphrase works, but removing the old slot %s failed: %w", old, err)
				}
			}
			g.say("passphrase changed (new key slot %s)", name)
			return nil
		},
	}
	passwd.Flags().StringVar(&newFile, "new-password-file", "", "read the new passphrase from this file")
	list := &cobra.Command{
		Use:   "list",
		Short: "List key slots",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			r, err := g.openRepo(ctx)
			if err != nil {
				return err
			}
			slots, err := repo.ListSlots(ctx, r.Store())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SLOT\tTYPE\tCREATED\tHOST\tSTATE")
			for _, s := range slots {
				state := "ok"
				typ, created, host := "?", "?", "?"
				if s.Err != nil {
					state = "DAMAGED: " + s.Err.Error()
				} else {
					typ, created, host = s.Slot.Type, s.Slot.Created.Format("2006-01-02 15:04"), s.Slot.Host
				}
				if s.Name == r.OpenedSlot() {
					state += " (current)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name[len(repo.KeysPrefix):][:12], typ, created, host, state)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(passwd, list)
	return cmd
}
