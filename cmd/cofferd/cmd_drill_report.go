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
	prefix := drill.VaultPrefix
	if tenant != "" {
		t, err := reg.Resolve(ctx, tenant)
		if err != nil {
			return err
		}
		prefix = drill.VaultTenantPrefix(t.ID)
	}
	out, err := readEvidence(ctx, data, prefix)
	if err != nil {
		return err
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

// readEvidence reads and parses every evidence object under prefix.
func readEvidence(ctx context.Context, s store.Store, prefix string) (*drillReportOut, error) {
	out := &drillReportOut{Type: "drill_report", Drills: []*drill.Evidence{}, Unreadable: []unreadableOut{}}
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
		return nil, fmt.Errorf("listing the drill evidence under %s: %w", prefix, err)
	}
	for _, name := range names {
		b, err := store.ReadAll(ctx, s, name)
		if err != nil {
			return nil, fmt.Errorf("reading the drill evidence %s: %w", name, err)
		}
		e, err := drill.Parse(b)
		if err != nil {
			out.Unreadable = append(out.Unreadable, unreadableOut{Object: name, Error: termtext.Clip(err.Error(), 300)})
			continue
		}
		out.Drills = append(out.Drills, e)
	}
	return out, nil
}
