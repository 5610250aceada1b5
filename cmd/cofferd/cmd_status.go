package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/vault"
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// statusOut is cofferd status's --json document.
type statusOut struct {
	Type string `json:"type"` // "status"
	*jobs.StatusReport
	Red bool `json:"red"`
}

func newStatusCmd(g *globals) *cobra.Command {
	var tenant string
	c := &cobra.Command{
		Use:   "status [--tenant NAME]",
		Short: "Each tenant's VMs against their recovery point objectives, absences, failed runs, seeds waiting, drills, usage",
		Long: `Status reads what the vault holds without any tenant's keys (receipts, drill
evidence, usage) and shows, per tenant and VM, the newest snapshot safely in
the vault and its age against the VM's recovery point objective (cofferd
tenant set-rpo), with a state:
  ok       the newest snapshot is at most the objective old
  late     it is older than the objective, at most twice it
  waiting  not ok nor late, but a snapshot at most twice the objective old
           waits on a seed (a shipped disk not imported yet)
  absent   no snapshot for more than twice the objective, or never (a VM
           given an objective of its own whose agent never reported)
  no-rpo   the VM has no objective: nothing is judged
Expected VMs are those any receipt names (the vault keeps receipts as long
as retention keeps their snapshots), those given an objective of their own,
and those run history names. Also shown: the newest drill of each VM and its
result, runs that failed since the newest snapshot, usage and the dedup
ratio (data bytes the agents reported over bytes stored), and why garbage
collection would refuse the tenant.
Exit 0: no VM late, waiting or absent and no VM's newest drill failed;
1: otherwise (the report is printed all the same).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return g.status(c.Context(), tenant) },
	}
	c.Flags().StringVar(&tenant, "tenant", "", "only this tenant (name or id)")
	return c
}

// status computes and prints the status; a red one is an error (exit 1).
func (g *globals) status(ctx context.Context, tenant string) error {
	data, reg, led, err := g.openState(ctx)
	if err != nil {
		return err
	}
	defer data.Close()
	tenants, err := selectTenants(ctx, reg, tenant)
	if err != nil {
		return err
	}
	r := &jobs.StatusReader{Data: data, Meta: reg.Swapper(), Ledger: led, Log: g.log, Runs: jobs.AgentRuns(data, g.log)}
	rep, err := r.Status(ctx, tenants, g.clock.Now())
	if err != nil {
		return err
	}
	if g.json {
		err = g.printJSON(statusOut{Type: "status", StatusReport: rep, Red: rep.Red()})
	} else {
		err = writeStatus(g.stdout, rep)
	}
	if err == nil && rep.Red() {
		err = redError(rep)
	}
	return err
}

// redError says what makes a report red.
func redError(rep *jobs.StatusReport) error {
	var parts []string
	if n := rep.Late + rep.Waiting + rep.Absent; n > 0 {
		parts = append(parts, fmt.Sprintf("%d VMs violate their recovery point objective (%d late, %d absent, %d waiting on a seed)",
			n, rep.Late, rep.Absent, rep.Waiting))
	}
	if rep.DrillsFailed > 0 {
		parts = append(parts, fmt.Sprintf("the newest drill of a VM failed (tenants: %d; cofferd drill --report says why)", rep.DrillsFailed))
	}
	return fmt.Errorf("%s: see the status above", strings.Join(parts, "; "))
}

// writeStatus writes the report as a table of VMs, then a few lines per
// tenant.
func writeStatus(w io.Writer, rep *jobs.StatusReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tVM\tSTATE\tNEWEST\tAGE\tRPO\tSEEDS WAITING\tLOST\tLAST DRILL\tFAILED RUNS")
	for _, ts := range rep.Tenants {
		for _, v := range ts.VMs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", ts.Tenant, termtext.Clip(v.VM, 60), v.State,
				timeText(v.Newest), ageText(v), secondsText(v.RPOSeconds), v.SeedsWaiting, v.SeedsLost, drillText(v.LastDrill), runsText(ts, v))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, ts := range rep.Tenants {
		writeTenantStatus(w, ts)
	}
	return nil
}

// writeTenantStatus writes a tenant's usage, garbage collection and drill
// lines.
func writeTenantStatus(w io.Writer, ts *jobs.TenantStatus) {
	dedup := "no dedup ratio yet"
	if ts.DedupRatio > 0 {
		dedup = fmt.Sprintf("dedup ratio %.2f", ts.DedupRatio)
	}
	fmt.Fprintf(w, "tenant %s: stored %s, data reported %s, %s", ts.Tenant, ledger.FormatSize(ts.StoredBytes), ledger.FormatSize(ts.DataBytes), dedup)
	if len(ts.VMs) == 0 {
		fmt.Fprint(w, "; no VM has reported yet")
	}
	if ts.Suspended {
		fmt.Fprint(w, "; suspended")
	}
	fmt.Fprintln(w)
	if ts.GCRefused != "" {
		fmt.Fprintf(w, "tenant %s: garbage collection refuses to run: %s\n", ts.Tenant, ts.GCRefused)
	}
	if r := ts.LastRun; r != nil {
		result := "ok"
		if r.Failed {
			result = "failed: " + termtext.Clip(r.Error, 200)
		}
		fmt.Fprintf(w, "tenant %s: the agent's last run %s %s; %d failed since the last that succeeded\n",
			ts.Tenant, r.Started.UTC().Format(time.RFC3339), result, ts.FailedRuns)
	}
	for _, v := range ts.VMs {
		if d := v.LastDrill; d != nil && !d.Passed {
			fmt.Fprintf(w, "tenant %s: the newest drill of %s failed: %s\n", ts.Tenant, termtext.Clean(v.VM), termtext.Clip(d.Error, 200))
		}
	}
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func ageText(v *jobs.VMStatus) string {
	if v.Newest.IsZero() {
		return "-"
	}
	return (time.Duration(v.AgeSeconds) * time.Second).Round(time.Minute).String()
}

func secondsText(s float64) string {
	if s == 0 {
		return "none"
	}
	return (time.Duration(s) * time.Second).String()
}

func drillText(d *jobs.DrillStatus) string {
	switch {
	case d == nil:
		return "none"
	case d.Passed:
		return d.Time.Format(time.RFC3339) + " passed"
	}
	return d.Time.Format(time.RFC3339) + " FAILED"
}

func runsText(ts *jobs.TenantStatus, v *jobs.VMStatus) string {
	if !ts.RunHistory {
		return "no run history"
	}
	if v.FailedRuns == 0 {
		return "0"
	}
	return fmt.Sprintf("%d: %s", v.FailedRuns, termtext.Clip(v.LastError, 60))
}

// statusCollector is cofferd serve's status gauges over every tenant of
// the vault (vault.StatusCollector).
func (g *globals) statusCollector(data store.Store, reg *registry.Registry, led *ledger.Ledger) *vault.StatusCollector {
	r := &jobs.StatusReader{Data: data, Meta: reg.Swapper(), Ledger: led, Log: g.log, Runs: jobs.AgentRuns(data, g.log)}
	return vault.NewStatusCollector(func(ctx context.Context) (*jobs.StatusReport, error) {
		tenants, err := reg.List(ctx)
		if err != nil {
			return nil, err
		}
		return r.Status(ctx, tenants, g.clock.Now())
	}, g.clock, 0, g.log)
}
