package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/drill"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// drillOut is cofferd drill's --json document.
type drillOut struct {
	Type    string            `json:"type"` // "drill"
	Drills  []*drill.Evidence `json:"drills"`
	Skipped []drillSkip       `json:"skipped"`
	Passed  int               `json:"passed"`
	Failed  int               `json:"failed"`
}

// drillSkip is a tenant (or a tenant's VM) the vault did not drill.
type drillSkip struct {
	Tenant string `json:"tenant"`
	VM     string `json:"vm,omitempty"`
	Reason string `json:"reason"`
}

// skipNoEscrow is why a tenant without escrow is not drilled by the vault.
const skipNoEscrow = "drilled by the tenant's agent (coffer drill)"

// drillFlags are cofferd drill's flags.
type drillFlags struct {
	tenant, name, escrowKey, pick, scratch string
	rto                                    time.Duration
	rtoVM                                  []string
	report                                 bool
	vmRTO                                  map[string]time.Duration
}

func newDrillCmd(g *globals) *cobra.Command {
	var f drillFlags
	c := &cobra.Command{
		Use:   "drill [--tenant NAME] [--name VM] --escrow-key FILE | --report",
		Short: "Restore drills: prove each VM's snapshot restores, with evidence and the RTO achieved",
		Long: `Drill restores: for each tenant that chose escrow (or --tenant), for each VM
(snapshot name, or --name), the chosen snapshot (--pick newest or random) is
restored verify-only (nothing written) or into --scratch DIR (removed after),
every block checked against the hashes recorded at backup and each disk's
digest. Evidence (snapshot, times, bytes, result, the recovery time achieved
against the objective) is stored create-only under vault/drills/ in the
vault's store. The objective is --rto-vm NAME=D for a VM, else --rto, else the
tenant's (cofferd tenant set-rto). Tenants without escrow are drilled by their
agent (coffer drill). --report prints the evidence: a table, or with --json a
document an auditor keeps.
Exit 0: every drill passed; 1: a drill failed; 12: the escrow identity does
not open a tenant's repository.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if f.report {
				for _, fl := range []string{"name", "escrow-key", "pick", "scratch", "rto", "rto-vm"} {
					if c.Flags().Changed(fl) {
						return usageError{Err: fmt.Errorf("--report prints stored evidence; --%s is for running drills", fl)}
					}
				}
				return g.drillReport(c.Context(), f.tenant)
			}
			if err := f.parse(); err != nil {
				return err
			}
			return g.drill(c.Context(), &f)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.tenant, "tenant", "", "drill (or report) only this tenant (name or id)")
	fl.StringVar(&f.name, "name", "", "drill only this VM (snapshot name)")
	fl.StringVar(&f.escrowKey, "escrow-key", "", "the escrow identity file (cofferd escrow init)")
	fl.StringVar(&f.pick, "pick", drill.PickNewest, "which snapshot of each VM: newest, or random (any the repository keeps)")
	fl.StringVar(&f.scratch, "scratch", "", "restore into this directory (each disk removed once checked) instead of verify-only")
	fl.DurationVar(&f.rto, "rto", 0, "recovery time objective for every VM drilled, overriding the tenants' (e.g. 4h)")
	fl.StringArrayVar(&f.rtoVM, "rto-vm", nil, "recovery time objective of one VM: NAME=DURATION (repeatable)")
	fl.BoolVar(&f.report, "report", false, "print the stored drill evidence instead of drilling")
	return c
}

// parse checks the flags and reads --rto-vm.
func (f *drillFlags) parse() error {
	if f.pick != drill.PickNewest && f.pick != drill.PickRandom {
		return usageError{Err: fmt.Errorf("--pick %q: want newest or random", f.pick)}
	}
	if f.rto < 0 || f.rto > registry.MaxRTO {
		return usageError{Err: fmt.Errorf("--rto %v: want a duration between 0 (none) and %v", f.rto, registry.MaxRTO)}
	}
	if f.scratch != "" {
		if st, err := os.Stat(f.scratch); err != nil || !st.IsDir() {
			return usageError{Err: fmt.Errorf("--scratch %s: give an existing directory with room for the largest disk", f.scratch)}
		}
	}
	f.vmRTO = map[string]time.Duration{}
	for _, s := range f.rtoVM {
		name, d, ok := strings.Cut(s, "=")
		rto, err := time.ParseDuration(d)
		if !ok || name == "" || err != nil || rto <= 0 || rto > registry.MaxRTO {
			return usageError{Err: fmt.Errorf("--rto-vm %q: want NAME=DURATION, such as web01=30m", s)}
		}
		f.vmRTO[name] = rto
	}
	return nil
}

// objective is the RTO a drill of VM vm of tenant t is measured against.
func (f *drillFlags) objective(t *registry.Tenant, vm string) time.Duration {
	if d, ok := f.vmRTO[vm]; ok {
		return d
	}
	if f.rto > 0 {
		return f.rto
	}
	return t.RTO
}

// drill runs the drills and prints their evidence.
func (g *globals) drill(ctx context.Context, f *drillFlags) error {
	out, err := g.runDrills(ctx, f)
	if err != nil {
		return err
	}
	if g.json {
		err = g.printJSON(out)
	} else {
		err = printDrills(g, out)
	}
	if err == nil && out.Failed > 0 {
		err = fmt.Errorf("%d of %d drills failed: the evidence says which and why (cofferd drill --report)", out.Failed, out.Failed+out.Passed)
	}
	return err
}

// printDrills writes the drills' table and the tenants skipped.
func printDrills(g *globals, out *drillOut) error {
	if len(out.Drills) > 0 {
		if err := drill.WriteTable(g.stdout, out.Drills); err != nil {
			return err
		}
	}
	for _, s := range out.Skipped {
		who := s.Tenant
		if s.VM != "" {
			who += " VM " + s.VM
		}
		fmt.Fprintf(g.stdout, "skipped: tenant %s: %s\n", who, s.Reason)
	}
	fmt.Fprintf(g.stdout, "%d passed, %d failed\n", out.Passed, out.Failed)
	return nil
}

// runDrills drills every tenant with escrow (or f.tenant).
func (g *globals) runDrills(ctx context.Context, f *drillFlags) (*drillOut, error) {
	data, reg, _, err := g.openState(ctx)
	if err != nil {
		return nil, err
	}
	defer data.Close()
	tenants, err := selectTenants(ctx, reg, f.tenant)
	if err != nil {
		return nil, err
	}
	out := &drillOut{Type: "drill", Drills: []*drill.Evidence{}, Skipped: []drillSkip{}}
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	for _, t := range tenants {
		if t.Escrow.Status != vaultapi.EscrowYes {
			out.Skipped = append(out.Skipped, drillSkip{Tenant: t.Name, Reason: skipNoEscrow})
			continue
		}
		if err := g.drillTenant(ctx, data, t, f, rng, out); err != nil {
			return nil, err
		}
	}
	for _, e := range out.Drills {
		if e.Passed() {
			out.Passed++
		} else {
			out.Failed++
		}
	}
	return out, nil
}

// selectTenants is the tenant named, or every tenant.
func selectTenants(ctx context.Context, reg *registry.Registry, name string) ([]*registry.Tenant, error) {
	if name == "" {
		return reg.List(ctx)
	}
	t, err := reg.Resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	return []*registry.Tenant{t}, nil
}

// drillTenant drills each VM of tenant t and stores the evidence in data.
// A wrong escrow identity stops every drill (exit 12); a tenant whose
// repository cannot be opened otherwise is skipped, saying why.
func (g *globals) drillTenant(ctx context.Context, data store.Store, t *registry.Tenant, f *drillFlags, rng *rand.Rand, out *drillOut) error {
	tr, err := g.openTenantRepo(ctx, t.ID, f.escrowKey)
	switch {
	case errors.Is(err, crypto.ErrEscrowIdentity) || errors.As(err, new(usageError)):
		return err
	case err != nil:
		out.Skipped = append(out.Skipped, drillSkip{Tenant: t.Name, Reason: err.Error()})
		return nil
	}
	defer tr.close()
	snaps, err := tr.repo.Snapshots(ctx, func(id string, err error) {
		g.log.Warn("snapshot skipped by the drill", "tenant", t.Name, "snapshot", id, "err", err.Error())
	})
	if err != nil {
		return fmt.Errorf("tenant %s: listing snapshots: %w", t.Name, err)
	}
	snaps, waiting, err := tr.readySnapshots(ctx, snaps, f.name)
	if err != nil {
		return err
	}
	out.Skipped = append(out.Skipped, waiting...)
	names, byName := drill.ByVM(snaps, f.name)
	if len(names) == 0 && len(waiting) == 0 {
		out.Skipped = append(out.Skipped, drillSkip{Tenant: t.Name, VM: f.name, Reason: "no snapshot to drill"})
	}
	for _, vm := range names {
		e, err := g.drillVM(ctx, tr.repo, t, byName[vm], f, rng)
		if err != nil {
			return err
		}
		if err := saveEvidence(ctx, data, e); err != nil {
			return err
		}
		out.Drills = append(out.Drills, e)
	}
	return nil
}

// drillVM drills the snapshot of one VM that f.pick chooses.
func (g *globals) drillVM(ctx context.Context, r *repo.Repo, t *registry.Tenant, snaps []*repo.SnapshotInfo, f *drillFlags, rng *rand.Rand) (*drill.Evidence, error) {
	snap, err := drill.Pick(snaps, f.pick, rng)
	if err != nil {
		return nil, err
	}
	e := drill.Run(ctx, r, snap, drill.Options{Clock: g.clock, Scratch: f.scratch, Objective: f.objective(t, snap.Name),
		Pick: f.pick, RunBy: drill.ByVault})
	if ctx.Err() != nil {
		return nil, ctx.Err() // interrupted: no evidence of a drill that did not finish
	}
	e.Tenant, e.TenantID = t.Name, t.ID
	return e, nil
}

// saveEvidence stores e create-only in the vault's store.
func saveEvidence(ctx context.Context, data store.Store, e *drill.Evidence) error {
	name, err := drill.VaultName(e)
	if err != nil {
		return err
	}
	b, err := e.Marshal()
	if err != nil {
		return err
	}
	if err := data.Put(ctx, name, store.Bytes(b), int64(len(b))); err != nil {
		return fmt.Errorf("storing the drill evidence %s: %w", name, err)
	}
	return nil
}

// tenantRTOOut is cofferd tenant set-rto's --json output.
type tenantRTOOut struct {
	Type       string  `json:"type"` // "tenant_rto"
	Tenant     string  `json:"tenant"`
	ID         string  `json:"id"`
	RTOSeconds float64 `json:"rto_seconds"` // 0: none
}

func newTenantSetRTOCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "set-rto NAME|ID DURATION|none",
		Short: "Set a tenant's recovery time objective, which restore drills measure against (cofferd drill)",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			var rto time.Duration
			if args[1] != "none" {
				d, err := time.ParseDuration(args[1])
				if err != nil || d <= 0 || d > registry.MaxRTO {
					return usageError{Err: fmt.Errorf("recovery time objective %q: want a duration such as 4h or 30m (at most %v), or none", args[1], registry.MaxRTO)}
				}
				rto = d
			}
			return g.withState(c.Context(), func(reg *registry.Registry, _ *ledger.Ledger) error {
				t, err := reg.Resolve(c.Context(), args[0])
				if err == nil {
					t, err = reg.SetRTO(c.Context(), t.ID, rto)
				}
				if err != nil {
					return err
				}
				if g.json {
					return g.printJSON(tenantRTOOut{Type: "tenant_rto", Tenant: t.Name, ID: t.ID, RTOSeconds: t.RTO.Seconds()})
				}
				fmt.Fprintf(g.stdout, "tenant %s: recovery time objective %s\n", t.Name, rtoText(t.RTO))
				return nil
			})
		},
	}
}

// rtoText shows a recovery time objective.
func rtoText(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return d.String()
}
