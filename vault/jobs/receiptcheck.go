package jobs

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
)

// Receipts is the ReceiptChecker of the vault: every receipt parses, names
// a snapshot that exists and packs that exist; every snapshot has a
// receipt (else garbage collection refuses the tenant).
type Receipts struct{}

// CheckReceipts implements ReceiptChecker.
func (Receipts) CheckReceipts(ctx context.Context, st store.Store, objects map[string]int64) ([]Problem, error) {
	var probs []Problem
	rcs, err := repo.Receipts(ctx, st, func(name string, err error) {
		probs = append(probs, Problem{Object: name, Kind: ProblemUnreadable, Message: err.Error()})
	})
	if err != nil {
		return nil, err
	}
	described := map[string]bool{}
	for _, rc := range rcs {
		described[rc.Snapshot] = true
		what := fmt.Sprintf("the receipt of snapshot %s (%s)", rc.Snapshot[:12], rc.Name)
		if _, ok := objects[repo.SnapshotsPrefix+rc.Snapshot]; !ok {
			probs = append(probs, Problem{Object: repo.SnapshotsPrefix + rc.Snapshot, Kind: ProblemMissing,
				Message: what + " names it, but it is not stored (a backup that failed before its snapshot, or a snapshot deleted without its receipt)"})
		}
		var missing []string
		for _, p := range rc.Packs {
			if _, ok := objects[repo.DataPrefix+p[:2]+"/"+p]; !ok {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			probs = append(probs, Problem{Object: repo.DataPrefix + missing[0][:2] + "/" + missing[0], Kind: ProblemMissing,
				Message: fmt.Sprintf("%s needs %d packs that are not stored (%s): the snapshot cannot be restored", what, len(missing), strings.Join(missing[:min(3, len(missing))], ", "))})
		}
	}
	var orphans []string
	for name := range objects {
		if id, ok := strings.CutPrefix(name, repo.SnapshotsPrefix); ok && !described[id] {
			orphans = append(orphans, name)
		}
	}
	slices.Sort(orphans)
	for _, name := range orphans {
		probs = append(probs, Problem{Object: name, Kind: ProblemMissing,
			Message: "the snapshot has no receipt, so the vault cannot collect garbage for this tenant: run coffer snapshots --write-receipts with the tenant's agent"})
	}
	return probs, nil
}
