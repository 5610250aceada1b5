package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/drill"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
)

// drillOut is coffer drill's --json document.
type drillOut struct {
	Type   string            `json:"type"` // "drill"
	Drills []*drill.Evidence `json:"drills"`
	Stored []string          `json:"stored"` // the evidence objects written, in order
	Passed int               `json:"passed"`
	Failed int               `json:"failed"`
}

func newDrillCmd(g *globals) *cobra.Command {
	var name string
	var rto time.Duration
	cmd := &cobra.Command{
		Use:   "drill [--name VM] [--rto DURATION]",
		Short: "Restore drill: verify the newest snapshot of each VM and store the evidence for the vault",
		Long: `Drill restores with the tenant's own key: the newest snapshot of each VM
(snapshot name, or --name) is restored verify-only (every chunk fetched and
every block checked against the hashes recorded at backup and each disk's
digest; nothing is written to disk). The evidence (snapshot, times, bytes,
result, the recovery time achieved against --rto, by default the objective
the vault holds for the tenant) is stored in the
repository under drills/ as plain JSON that holds no secrets, so that a
vault's provider can show it (cofferd drill --report) without any key.
Exit 0: every drill passed; 1: a drill failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rto < 0 {
				return usageError{Err: fmt.Errorf("--rto %v: want a positive duration such as 4h", rto)}
			}
			if !cmd.Flags().Changed("rto") {
				rto = g.tenantRTO(cmd.Context())
			}
			out, err := g.runDrills(cmd.Context(), name, rto)
			if err != nil {
				return err
			}
			g.printDrills(out)
			if out.Failed > 0 {
				return fmt.Errorf("%d of %d drills failed: the evidence says which and why", out.Failed, out.Failed+out.Passed)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "drill only this VM (snapshot name)")
	f.DurationVar(&rto, "rto", 0, "recovery time objective to measure the drills against (e.g. 4h)")
	return cmd
}

// tenantRTO is the recovery time objective the vault holds for this
// agent's tenant (cofferd tenant set-rto), or 0 for none or when the
// repository is not on a vault. Not knowing it does not stop a drill.
func (g *globals) tenantRTO(ctx context.Context) time.Duration {
	raw, err := g.repository()
	if err != nil {
		return 0
	}
	base := vaultURL(raw)
	if base == nil {
		return 0
	}
	t, err := g.vaultTenantInfo(ctx, base)
	if err != nil {
		fmt.Fprintf(g.stderr, "coffer: warning: the vault did not say the tenant's recovery time objective (%s); the drill has none\n", termtext.Clean(err.Error()))
		return 0
	}
	return time.Duration(t.RTOSeconds * float64(time.Second))
}

// runDrills drills the newest snapshot of each VM (or of VM name) and
// stores each drill's evidence in the repository.
func (g *globals) runDrills(ctx context.Context, name string, rto time.Duration) (*drillOut, error) {
	r, err := g.openRepo(ctx)
	if err != nil {
		return nil, err
	}
	if err := g.loadIndex(ctx, r); err != nil {
		return nil, err
	}
	snaps, err := r.Snapshots(ctx, g.skippedSnapshot(r))
	if err != nil {
		return nil, err
	}
	// Snapshots that needed a cancelled seed cannot be restored: a drill
	// picks among the others.
	lost, err := g.lostSnapshots(ctx, r)
	if err != nil {
		return nil, err
	}
	snaps = slices.DeleteFunc(snaps, func(s *repo.SnapshotInfo) bool { return lost[s.ID] != nil })
	names, byName := drill.ByVM(snaps, name)
	if len(names) == 0 {
		if name != "" {
			return nil, usageError{Err: fmt.Errorf("the repository holds no snapshot named %s (coffer snapshots lists them)", name)}
		}
		if len(lost) > 0 {
			return nil, fmt.Errorf("every snapshot of the repository needed a cancelled seed and cannot be restored: run a backup, then drill it")
		}
		return nil, usageError{Err: fmt.Errorf("the repository holds no snapshot to drill yet")}
	}
	out := &drillOut{Type: "drill", Drills: []*drill.Evidence{}, Stored: []string{}}
	for _, vm := range names {
		snap, _ := drill.Pick(byName[vm], drill.PickNewest, nil)
		e := drill.Run(ctx, r, snap, drill.Options{Objective: rto, RunBy: drill.ByAgent})
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		obj, err := storeEvidence(ctx, r, e)
		if err != nil {
			return nil, err
		}
		out.Drills, out.Stored = append(out.Drills, e), append(out.Stored, obj)
		if e.Passed() {
			out.Passed++
		} else {
			out.Failed++
		}
	}
	return out, nil
}

// storeEvidence writes e into the repository, named by its digest.
func storeEvidence(ctx context.Context, r *repo.Repo, e *drill.Evidence) (string, error) {
	b, err := e.Marshal()
	if err != nil {
		return "", err
	}
	name := drill.AgentName(b)
	if err := r.Store().Put(ctx, name, store.Bytes(b), int64(len(b))); err != nil {
		return "", fmt.Errorf("storing the drill evidence %s: %w", name, err)
	}
	return name, nil
}

// printDrills prints the drills as a table, or the --json document.
func (g *globals) printDrills(out *drillOut) {
	if g.json {
		g.printJSON(out)
		return
	}
	if !g.quiet {
		_ = drill.WriteTable(g.stdout, out.Drills)
	}
	g.say("%d passed, %d failed; evidence stored in the repository under %s", out.Passed, out.Failed, drill.AgentPrefix)
}
