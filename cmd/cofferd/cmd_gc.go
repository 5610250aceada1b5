package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/maint"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// gcOut is cofferd gc's --json document.
type gcOut struct {
	Type    string           `json:"type"` // "gc"
	Tenants []*jobs.GCReport `json:"tenants"`
	Refused []drillSkip      `json:"refused"`
}

type gcFlags struct {
	tenant     string
	grace      time.Duration
	dryRun     bool
	pauseAfter string // hidden: tests kill the process there
}

func newGCCmd(g *globals) *cobra.Command {
	var f gcFlags
	c := &cobra.Command{
		Use:   "gc [--tenant NAME] [--grace D] [--dry-run]",
		Short: "Collect garbage: delete packs no receipt needs, after a grace period",
		Long: `Garbage collection, from receipts alone (no keys): packs that no snapshot's
receipt names are marked; a pack still marked after --grace (at least 24h by
default), while no upload session that began before its mark is alive, is
condemned and then deleted, and the tenant's usage drops by what it held. A
receipt stored meanwhile that names a marked pack takes it back; one that names
a condemned pack is refused, and the agent uploads its chunks again. Nothing
holds a lock: backups, prune and several cofferd replicas may run at the same
time. A tenant with a snapshot that has no receipt (an agent older than
receipts wrote it) is refused, since what it needs is unknown.
Exit 0: collected; 1: a tenant was refused.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if f.grace != 0 && f.grace < time.Minute {
				return usageError{Err: fmt.Errorf("--grace %s is too short: a backup in flight needs its packs kept for longer", f.grace)}
			}
			return g.gc(c.Context(), &f)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.tenant, "tenant", "", "collect this tenant only (name or id)")
	fl.DurationVar(&f.grace, "grace", maint.DefaultGrace, "how long a pack stays marked before it is deleted")
	fl.BoolVar(&f.dryRun, "dry-run", false, "say what would be marked and condemned; change nothing")
	fl.StringVar(&f.pauseAfter, "pause-after", "", "stop after a phase and wait to be killed (tests)")
	_ = fl.MarkHidden("pause-after")
	return c
}

func (g *globals) gc(ctx context.Context, f *gcFlags) error {
	data, reg, led, err := g.openState(ctx)
	if err != nil {
		return err
	}
	defer data.Close()
	out, err := g.runGC(ctx, data, reg, led, f)
	if err != nil {
		return err
	}
	if g.json {
		if err := g.printJSON(out); err != nil {
			return err
		}
	} else {
		g.printGC(out, f.dryRun)
	}
	if len(out.Refused) > 0 {
		return fmt.Errorf("garbage collection refused for %d of %d tenants (see above)", len(out.Refused), len(out.Refused)+len(out.Tenants))
	}
	return nil
}

// runGC collects every tenant's garbage (or one's).
func (g *globals) runGC(ctx context.Context, data store.Store, reg *registry.Registry, led *ledger.Ledger, f *gcFlags) (*gcOut, error) {
	d, err := g.jobDeps(data, led)
	if err != nil {
		return nil, err
	}
	d.AfterPhase = g.pauseAfter(f.pauseAfter)
	tenants, err := selectTenants(ctx, reg, f.tenant)
	if err != nil {
		return nil, err
	}
	out := &gcOut{Type: "gc"}
	out.Tenants, out.Refused, err = eachTenant(tenants, func(t *registry.Tenant) (*jobs.GCReport, error) {
		rep, err := jobs.CollectGarbage(ctx, d, t.ID, jobs.GCOptions{Grace: f.grace, DryRun: f.dryRun})
		if rep != nil {
			rep.Tenant = t.Name
		}
		return rep, err
	})
	return out, err
}

// eachTenant runs a job for each tenant in turn: a tenant the job refuses
// (jobs.ErrUnsafe) is skipped with the reason; any other error stops.
func eachTenant[R any](tenants []*registry.Tenant, job func(*registry.Tenant) (R, error)) ([]R, []drillSkip, error) {
	reps, skipped := []R{}, []drillSkip{}
	for _, t := range tenants {
		rep, err := job(t)
		if errors.Is(err, jobs.ErrUnsafe) {
			skipped = append(skipped, drillSkip{Tenant: t.Name, Reason: err.Error()})
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		reps = append(reps, rep)
	}
	return reps, skipped, nil
}

func (g *globals) printGC(out *gcOut, dry bool) {
	verb := "deleted"
	if dry {
		verb = "would delete"
	}
	for _, r := range out.Tenants {
		p := r.Plan
		fmt.Fprintf(g.stdout, "tenant %s: %d receipts, %d packs (%d needed, %d too young to mark); marked %d, waiting %d, condemned %d; %s %d packs (%s)\n",
			r.Tenant, r.Receipts, r.Packs, p.Needed, p.Young, len(p.NewMarks), p.Waiting, len(p.Condemned), verb, len(r.Deleted), ledger.FormatSize(r.DeletedBytes))
	}
	for _, s := range out.Refused {
		fmt.Fprintf(g.stdout, "tenant %s: refused: %s\n", s.Tenant, s.Reason)
	}
}

// pauseAfter returns the hook that stops a job after the named phase and
// waits until the process is killed (the crash tests' way to kill it
// exactly there), or nil.
func (g *globals) pauseAfter(phase string) func(string) {
	if phase == "" {
		return nil
	}
	return func(p string) {
		if p != phase {
			return
		}
		fmt.Fprintf(g.stderr, "paused after %s\n", p)
		select {}
	}
}
