package main

import (
	"context"
	"fmt"

	"github.com/cofferhq/coffer/internal/drill"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
)

// drillReportOut is cofferd drill --report's --json document: every drill's
// evidence, and the evidence objects that could not be read.
type drillReportOut struct {
	Type       string            `json:"type"` // "drill_report"
	Drills     []*drill.Evidence `json:"drills"`
	Unreadable []unreadableOut   `json:"unreadable"`
}

// unreadableOut is a stored evidence object that did not parse.
type unreadableOut struct {
	Object string `json:"object"`
	Error  string `json:"error"`
}

// drillReport prints the stored evidence of every tenant (or one).
func (g *globals) drillReport(ctx context.Context, tenant string) error {
	data, reg, _, err := g.openState(ctx)
	if err != nil {
		return err
	}
	defer data.Close()
	tenants, err := selectTenants(ctx, reg, tenant)
	if err != nil {
		return err
	}
	out := &drillReportOut{Type: "drill_report", Drills: []*drill.Evidence{}, Unreadable: []unreadableOut{}}
	for _, t := range tenants {
		if err := readEvidence(ctx, data, drill.VaultTenantPrefix(t.ID), out, nil); err != nil {
			return err
		}
		// What the tenant's agent stored (coffer drill): its own claim,
		// so it names the tenant the vault knows and says the agent ran it.
		agent := func(e *drill.Evidence) error {
			if e.RunBy != drill.ByAgent {
				return fmt.Errorf("says run_by %s, but it is in the tenant's repository", e.RunBy)
			}
			e.Tenant, e.TenantID = t.Name, t.ID
			return nil
		}
		if err := readEvidence(ctx, data, objectPrefix(t.ID, drill.AgentPrefix), out, agent); err != nil {
			return err
		}
	}
	drill.Sort(out.Drills)
	if g.json {
		return g.printJSON(out)
	}
	if len(out.Drills) == 0 {
		fmt.Fprintln(g.stdout, "no drill evidence yet: run cofferd drill (or coffer drill on the tenant's side)")
	} else if err := drill.WriteTable(g.stdout, out.Drills); err != nil {
		return err
	}
	for _, u := range out.Unreadable {
		fmt.Fprintf(g.stdout, "unreadable evidence %s: %s\n", u.Object, u.Error)
	}
	return nil
}

// objectPrefix is where prefix of tenant id's repository is in the vault's
// store.
func objectPrefix(id, prefix string) string { return "repos/" + id + "/" + prefix }

// readEvidence reads and parses every evidence object under prefix into
// out; check, if set, vets each record.
func readEvidence(ctx context.Context, s store.Store, prefix string, out *drillReportOut, check func(*drill.Evidence) error) error {
	var names []string
	err := s.List(ctx, prefix, func(i store.Info) error {
		if i.Size > drill.MaxEvidenceSize {
			out.Unreadable = append(out.Unreadable, unreadableOut{Object: i.Name, Error: fmt.Sprintf("%d bytes, more than evidence can be", i.Size)})
			return nil
		}
		names = append(names, i.Name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing the drill evidence under %s: %w", prefix, err)
	}
	for _, name := range names {
		b, err := store.ReadAll(ctx, s, name)
		if err != nil {
			return fmt.Errorf("reading the drill evidence %s: %w", name, err)
		}
		e, err := drill.Parse(b)
		if err == nil && check != nil {
			err = check(e)
		}
		if err != nil {
			out.Unreadable = append(out.Unreadable, unreadableOut{Object: name, Error: termtext.Clip(err.Error(), 300)})
			continue
		}
		out.Drills = append(out.Drills, e)
	}
	return nil
}
