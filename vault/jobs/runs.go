package jobs

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cofferhq/coffer/internal/runrecord"
	"github.com/cofferhq/coffer/internal/store"
)

// maxRunsRead bounds the run records status reads per tenant: the newest
// by name order is not the newest by time, so it reads them all up to
// this many (a year of nightly runs and more).
const maxRunsRead = 2000

// AgentRuns is the RunSource of the scheduled agents' run records
// (runs/<sha256>, internal/runrecord): each one a run of the whole agent
// (VM ""), failed unless its result is ok. A record that does not parse
// is logged and skipped: an agent wrote it.
func AgentRuns(data store.Store, log *slog.Logger) RunSource {
	return func(ctx context.Context, tenantID string) ([]RunRecord, error) {
		sub, err := store.ReadOnlySub(data, tenantPrefix(tenantID))
		if err != nil {
			return nil, err
		}
		var names []string
		err = sub.List(ctx, runrecord.Prefix, func(i store.Info) error {
			if len(names) < maxRunsRead {
				names = append(names, i.Name)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listing run records: %w", err)
		}
		var out []RunRecord
		for _, name := range names {
			b, err := store.ReadAllLimit(ctx, sub, name, runrecord.MaxRecordSize)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", name, err)
			}
			rec, err := runrecord.Parse(b)
			if err != nil {
				if log != nil {
					log.Warn("run record skipped", "tenant", tenantID, "object", name, "err", err.Error())
				}
				continue
			}
			out = append(out, RunRecord{Started: rec.Started, Failed: rec.Result != runrecord.ResultOK, Error: rec.Error})
		}
		return out, nil
	}
}
