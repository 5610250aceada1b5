package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// tenantRPOOut is cofferd tenant set-rpo's --json output.
type tenantRPOOut struct {
	Type           string             `json:"type"` // "tenant_rpo"
	Tenant         string             `json:"tenant"`
	ID             string             `json:"id"`
	DefaultSeconds float64            `json:"rpo_default_seconds"` // 0: none
	VMs            map[string]float64 `json:"rpo_vm_seconds"`      // VMs' own; 0: explicitly none
}

func newTenantSetRPOCmd(g *globals) *cobra.Command {
	var vm string
	c := &cobra.Command{
		Use:   "set-rpo NAME|ID DURATION|none|default [--vm VM]",
		Short: "Set a tenant's recovery point objective, or one VM's, which cofferd status measures against",
		Long: `Set how old the newest snapshot of a VM safely in the vault may be (cofferd
status calls it late after that, absent after twice that). Without --vm it
is the tenant's default for every VM; with --vm VM (a snapshot name) it is
that VM's own, which also makes the VM expected: if its agent never reports,
status shows it absent. none: no objective (for --vm: none even when the
tenant has a default, for a retired VM); default (--vm only): the VM
follows the tenant's default again.`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			rpo, inherit, err := parseRPO(args[1], vm)
			if err != nil {
				return err
			}
			return g.withState(c.Context(), func(reg *registry.Registry, _ *ledger.Ledger) error {
				t, err := reg.Resolve(c.Context(), args[0])
				switch {
				case err != nil:
				case inherit:
					t, err = reg.ClearVMRPO(c.Context(), t.ID, vm)
				default:
					t, err = reg.SetRPO(c.Context(), t.ID, vm, rpo)
				}
				if err != nil {
					return err
				}
				return g.printRPO(t, vm)
			})
		},
	}
	c.Flags().StringVar(&vm, "vm", "", "set this VM's own objective (its snapshot name) instead of the tenant's default")
	return c
}

// parseRPO reads DURATION|none|default; inherit is "default".
func parseRPO(s, vm string) (time.Duration, bool, error) {
	switch s {
	case "none":
		return 0, false, nil
	case "default":
		if vm == "" {
			return 0, false, usageError{Err: fmt.Errorf("default is for a VM (--vm VM): it makes the VM follow the tenant's objective again")}
		}
		return 0, true, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > registry.MaxRPO {
		return 0, false, usageError{Err: fmt.Errorf("recovery point objective %q: want a duration such as 24h or 90m (at most %v), none, or with --vm default",
			termtext.Clip(termtext.Clean(s), 40), registry.MaxRPO)}
	}
	return d, false, nil
}

// printRPO prints tenant t's objectives after a change of VM vm's ("" the
// default).
func (g *globals) printRPO(t *registry.Tenant, vm string) error {
	if g.json {
		out := tenantRPOOut{Type: "tenant_rpo", Tenant: t.Name, ID: t.ID, VMs: map[string]float64{}}
		if t.RPO != nil {
			out.DefaultSeconds = t.RPO.Default.Seconds()
			for name, d := range t.RPO.PerVM {
				out.VMs[name] = d.Seconds()
			}
		}
		return g.printJSON(out)
	}
	d, own := t.RPOFor(vm)
	switch {
	case vm == "":
		fmt.Fprintf(g.stdout, "tenant %s: recovery point objective %s\n", t.Name, rtoText(d))
	case own:
		fmt.Fprintf(g.stdout, "tenant %s, VM %s: recovery point objective %s (its own)\n", t.Name, termtext.Clean(vm), rtoText(d))
	default:
		fmt.Fprintf(g.stdout, "tenant %s, VM %s: recovery point objective %s (the tenant's default)\n", t.Name, termtext.Clean(vm), rtoText(d))
	}
	return nil
}
