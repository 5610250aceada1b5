package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// withStore opens the vault state for one command that also reads the
// tenants' repositories.
func (g *globals) withStore(ctx context.Context, fn func(store.Store, *registry.Registry, *ledger.Ledger) error) error {
	s, reg, l, err := g.openState(ctx)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(s, reg, l)
}

// tenantSlots resolves a tenant and lists its key slots.
func tenantSlots(ctx context.Context, data store.Store, reg *registry.Registry, l *ledger.Ledger, nameOrID string) (*registry.Tenant, []vault.KeySlot, error) {
	t, err := reg.Resolve(ctx, nameOrID)
	if err != nil {
		return nil, nil, err
	}
	u, err := l.Usage(ctx, t.ID)
	if err != nil {
		return nil, nil, err
	}
	slots, err := vault.KeySlots(ctx, data, t, u.KeyUploads)
	return t, slots, err
}

type keysOut struct {
	Tenant   string          `json:"tenant"`
	TenantID string          `json:"tenant_id"`
	Slots    []vault.KeySlot `json:"slots"`
}

func newTenantKeysCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "keys NAME|ID",
		Short: "List a tenant's key slots (what the vault sees without opening them)",
		Long: `List the key slots of a tenant's repository: the slot id (the hex after
keys/, what 'cofferd tenant remove-key' takes), its type, when and on which
host it was made, its note, and the agent credential that uploaded it when
the vault recorded that. The vault cannot open slots; host and note are
what the tenant's agent wrote, shown with unprintable characters as '?'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.withStore(c.Context(), func(data store.Store, reg *registry.Registry, l *ledger.Ledger) error {
				t, slots, err := tenantSlots(c.Context(), data, reg, l, args[0])
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(keysOut{Tenant: t.Name, TenantID: t.ID, Slots: slots})
				}
				if len(slots) == 0 {
					fmt.Fprintf(g.stdout, "tenant %s has no key slots yet (no agent finished coffer init)\n", t.Name)
					return nil
				}
				return printSlots(g, slots)
			})
		},
	}
}

func printSlots(g *globals, slots []vault.KeySlot) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tTYPE\tCREATED\tHOST\tUPLOADED BY\tNOTE")
	for _, s := range slots {
		typ, created := s.Type, "-"
		if s.Escrow {
			typ += " (recorded escrow)"
		}
		if !s.Created.IsZero() {
			created = s.Created.Format(time.RFC3339)
		}
		note := s.Note
		if s.Problem != "" {
			note = s.Problem
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, typ, created, dash(s.Host), dash(s.Credential), dash(note))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type removedOut struct {
	Tenant   string        `json:"tenant"`
	TenantID string        `json:"tenant_id"`
	Removed  vault.KeySlot `json:"removed"`
	Forced   bool          `json:"forced"`
}

func newTenantRemoveKeyCmd(g *globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "remove-key NAME|ID KEY-ID",
		Short: "Remove a key slot from a tenant's repository (e.g. the old one after coffer key passwd)",
		Long: `Remove one key slot from a tenant's repository. Agents cannot delete
through the vault, so after 'coffer key passwd' the old slot (and with it
the old passphrase) stays until the provider removes it with this command.

KEY-ID is the slot's hex name (cofferd tenant keys NAME lists them) or a
unique prefix of at least 8 hex digits. It refuses to remove the tenant's
last passphrase slot and the escrow slot the vault recorded, unless
--force; a forced removal of the escrow slot sets the tenant's escrow back
to "chosen, slot pending". It prints what it removed.`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return g.withStore(c.Context(), func(data store.Store, reg *registry.Registry, l *ledger.Ledger) error {
				return g.removeKey(c.Context(), data, reg, l, args[0], args[1], force)
			})
		},
	}
	c.Flags().BoolVar(&force, "force", false, "also remove the last passphrase slot or the recorded escrow slot")
	return c
}

func (g *globals) removeKey(ctx context.Context, data store.Store, reg *registry.Registry, l *ledger.Ledger, tenant, keyID string, force bool) error {
	t, slots, err := tenantSlots(ctx, data, reg, l, tenant)
	if err != nil {
		return err
	}
	s, err := vault.FindKeySlot(slots, t.Name, keyID)
	var ve *vaultapi.Error
	if errors.As(err, &ve) && ve.Code == vaultapi.CodeBadRequest {
		return usageError{Err: err}
	}
	if err != nil {
		return err
	}
	if err := vault.CheckRemovable(slots, s, t.Name, force); err != nil {
		return err
	}
	if err := vault.RemoveKeySlot(ctx, data, reg, t, s); err != nil {
		return err
	}
	if g.json {
		return g.printJSON(removedOut{Tenant: t.Name, TenantID: t.ID, Removed: *s, Forced: force})
	}
	fmt.Fprintf(g.stdout, "removed key slot %s from tenant %s: %s", s.ID, t.Name, s.Type)
	if !s.Created.IsZero() {
		fmt.Fprintf(g.stdout, ", created %s", s.Created.Format(time.RFC3339))
	}
	if s.Host != "" {
		fmt.Fprintf(g.stdout, " on %s", s.Host)
	}
	fmt.Fprintln(g.stdout)
	if s.Escrow {
		fmt.Fprintf(g.stdout, "tenant %s has no recorded escrow slot now (escrow: chosen, slot pending)\n", t.Name)
	}
	return nil
}
