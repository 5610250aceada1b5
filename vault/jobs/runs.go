package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

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
//
// Records are named by their SHA-256 and never change, so each is read and
// parsed once per process: a status computed on every scrape lists the
// records, and reads only the new ones.
func AgentRuns(data store.Store, log *slog.Logger) RunSource {
	var seen sync.Map // tenant id + "/" + object name -> RunRecord, or nil for a bad one
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
			if v, ok := seen.Load(tenantID + "/" + name); ok {
				if rec, ok := v.(RunRecord); ok {
					out = append(out, rec)
				}
				continue
			}
			b, err := store.ReadAllLimit(ctx, sub, name, runrecord.MaxRecordSize)
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", name, err)
			}
			rec, err := runrecord.Parse(b)
			if err != nil {
				if log != nil {
					log.Warn("run record skipped", "tenant", tenantID, "object", name, "err", err.Error())
				}
				seen.Store(tenantID+"/"+name, nil)
				continue
			}
			r := RunRecord{Started: rec.Started, Failed: rec.Result != runrecord.ResultOK, Error: rec.Error}
			seen.Store(tenantID+"/"+name, r)
			out = append(out, r)
		}
		return out, nil
	}
}
