package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/maint"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// retentionOut is cofferd tenant set-retention's --json document.
type retentionOut struct {
	Type      string          `json:"type"` // "tenant_retention"
	Tenant    string          `json:"tenant"`
	ID        string          `json:"id"`
	Retention *maint.Policies `json:"retention"`
	TimeZone  string          `json:"time_zone"`
}

func newTenantSetRetentionCmd(g *globals) *cobra.Command {
	var pf maint.PolicyFlags
	var vm, tz string
	var clear bool
	c := &cobra.Command{
		Use:   "set-retention NAME|ID [--vm VM] --keep-* N ... | --clear",
		Short: "Set a tenant's retention policy (GFS), which cofferd prune applies",
		Long: `Set the retention policy cofferd prune applies to a tenant's snapshots, from
their receipts: the default, or with --vm the policy of one VM (a snapshot
name), which replaces the default for it. A snapshot is kept when any rule
keeps it: --keep-last N newest, --keep-within D of the VM's newest, and the
newest of each of the last N hours, days, ISO weeks, months and years that
have one (calendar buckets in --tz, default UTC). --clear removes the policy
(or the VM's). With no policy nothing is pruned.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var p maint.Policy
			if !clear {
				var err error
				if p, err = pf.Policy(); err != nil {
					return usageError{Err: err}
				}
			}
			return g.withState(c.Context(), func(reg *registry.Registry, _ *ledger.Ledger) error {
				t, err := reg.Resolve(c.Context(), args[0])
				if err != nil {
					return err
				}
				t, err = reg.SetRetention(c.Context(), t.ID, func(ps *maint.Policies, zone *string) error {
					if c.Flags().Changed("tz") {
						*zone = tz
					}
					switch {
					case vm == "":
						ps.Default = p
					case clear:
						delete(ps.PerGroup, vm)
					default:
						if err := maint.ValidateGroupName(vm); err != nil {
							return usageError{Err: err}
						}
						if ps.PerGroup == nil {
							ps.PerGroup = map[string]maint.Policy{}
						}
						ps.PerGroup[vm] = p
					}
					return nil
				})
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(retentionOut{Type: "tenant_retention", Tenant: t.Name, ID: t.ID, Retention: t.Retention, TimeZone: t.TimeZone})
				}
				fmt.Fprintf(g.stdout, "tenant %s: retention %s\n", t.Name, retentionText(t))
				return nil
			})
		},
	}
	pf.Bind(c.Flags())
	c.Flags().StringVar(&vm, "vm", "", "the policy of this VM (snapshot name) instead of the default")
	c.Flags().StringVar(&tz, "tz", "", "time zone of the calendar buckets (e.g. Europe/Amsterdam; default UTC)")
	c.Flags().BoolVar(&clear, "clear", false, "remove the policy (with --vm: the VM's)")
	return c
}

func retentionText(t *registry.Tenant) string {
	if t.Retention == nil {
		return "none (nothing is pruned)"
	}
	s := "default: " + t.Retention.Default.String()
	if t.Retention.Default.Empty() {
		s = "default: none (kept)"
	}
	for vm, p := range t.Retention.PerGroup {
		s += fmt.Sprintf("; VM %s: %s", termtext.Clean(vm), p.String())
	}
	if t.TimeZone != "" {
		s += " (days in " + t.TimeZone + ")"
	}
	return s
}

// pruneOut is cofferd prune's --json document.
type pruneOut struct {
	Type    string              `json:"type"` // "prune"
	Tenants []*jobs.PruneReport `json:"tenants"`
	Skipped []drillSkip         `json:"skipped"`
}

func newPruneCmd(g *globals) *cobra.Command {
	var tenant string
	var dry bool
	c := &cobra.Command{
		Use:   "prune [--tenant NAME] [--dry-run]",
		Short: "Apply each tenant's retention policy: forget the snapshots it drops",
		Long: `Apply each tenant's retention policy (cofferd tenant set-retention) to its
snapshots, from their receipts alone (no keys): each snapshot the policy drops
is deleted with its receipt and the tenant's usage drops by them. The packs
they needed are left to garbage collection (cofferd gc), which deletes them
after its grace period. --dry-run lists what would go and why the rest stays.
Tenants without a policy are skipped.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return g.prune(c.Context(), tenant, dry) },
	}
	c.Flags().StringVar(&tenant, "tenant", "", "prune this tenant only (name or id)")
	c.Flags().BoolVar(&dry, "dry-run", false, "list what would be removed; change nothing")
	return c
}

func (g *globals) prune(ctx context.Context, tenant string, dry bool) error {
	data, reg, led, err := g.openState(ctx)
	if err != nil {
		return err
	}
	defer data.Close()
	out, err := g.runPrune(ctx, data, reg, led, tenant, dry)
	if err != nil {
		return err
	}
	if g.json {
		return g.printJSON(out)
	}
	g.printPrune(out, dry)
	return nil
}

// runPrune applies the retention of every tenant (or one) that has a policy.
func (g *globals) runPrune(ctx context.Context, data store.Store, reg *registry.Registry, led *ledger.Ledger, tenant string, dry bool) (*pruneOut, error) {
	d, err := g.jobDeps(data, led)
	if err != nil {
		return nil, err
	}
	tenants, err := selectTenants(ctx, reg, tenant)
	if err != nil {
		return nil, err
	}
	out := &pruneOut{Type: "prune"}
	var without []drillSkip
	var with []*registry.Tenant
	for _, t := range tenants {
		if t.Retention == nil {
			without = append(without, drillSkip{Tenant: t.Name, Reason: "no retention policy (cofferd tenant set-retention)"})
		} else {
			with = append(with, t)
		}
	}
	out.Tenants, out.Skipped, err = eachTenant(with, func(t *registry.Tenant) (*jobs.PruneReport, error) {
		loc, _ := time.LoadLocation(t.TimeZone)
		rep, err := jobs.Prune(ctx, d, t.ID, jobs.PruneOptions{Policies: *t.Retention, Location: loc, DryRun: dry})
		if rep != nil {
			rep.Tenant = t.Name
		}
		return rep, err
	})
	out.Skipped = append(out.Skipped, without...)
	return out, err
}

// jobDeps is what the vault's jobs work with.
func (g *globals) jobDeps(data store.Store, led *ledger.Ledger) (jobs.Deps, error) {
	sw, ok := store.As[store.Swapper](data)
	if !ok {
		return jobs.Deps{}, fmt.Errorf("the vault's store %s does not support conditional writes", data.Location())
	}
	return jobs.Deps{Data: data, Meta: sw, Ledger: led, Clock: g.clock, Log: g.log}, nil
}

func (g *globals) printPrune(out *pruneOut, dry bool) {
	verb := "removed"
	if dry {
		verb = "would remove"
	}
	for _, r := range out.Tenants {
		fmt.Fprintf(g.stdout, "tenant %s: %s %d snapshots\n", r.Tenant, verb, r.Removed)
		for _, d := range r.Decisions {
			what := "keep  "
			if !d.Keep {
				what = "remove"
			}
			fmt.Fprintf(g.stdout, "  %s %s %s  %s\n", what, d.Time.UTC().Format(time.RFC3339), termtext.Clean(d.Group), strings.Join(d.Reasons, ", "))
		}
		for _, f := range r.Future {
			fmt.Fprintf(g.stdout, "  kept, dated in the future (a clock is wrong?): %s\n", f)
		}
	}
	for _, s := range out.Skipped {
		fmt.Fprintf(g.stdout, "tenant %s: skipped: %s\n", s.Tenant, s.Reason)
	}
}
