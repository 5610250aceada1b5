package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// Receipts is the ReceiptChecker of the vault: every receipt parses, names
// a snapshot that exists and packs that exist; every snapshot has a
// receipt (else garbage collection refuses the tenant). A receipt whose
// missing packs all travel on its seed, still in transit, waits
// (ProblemWaiting) instead; one whose seed was cancelled is lost
// (ProblemLost).
type Receipts struct {
	// Seeds are the tenant's seeds; nil: no receipt waits.
	Seeds *TenantSeeds
}

// CheckReceipts implements ReceiptChecker.
func (r Receipts) CheckReceipts(ctx context.Context, st store.Store, objects map[string]int64) ([]Problem, error) {
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
			p, err := r.missingPacks(ctx, rc, what, missing)
			if err != nil {
				return nil, err
			}
			probs = append(probs, p)
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

// missingPacks is the finding of a receipt (described by what) whose packs
// missing are not stored: waiting when they travel on its seed in transit,
// else missing, saying what the seed has to do with it.
func (r Receipts) missingPacks(ctx context.Context, rc *vaultapi.Receipt, what string, missing []string) (Problem, error) {
	obj := repo.DataPrefix + missing[0][:2] + "/" + missing[0]
	msg := fmt.Sprintf("%s needs %d packs that are not stored (%s): the snapshot cannot be restored", what, len(missing), strings.Join(missing[:min(3, len(missing))], ", "))
	if rc.Seed == "" || r.Seeds == nil {
		return Problem{Object: obj, Kind: ProblemMissing, Message: msg}, nil
	}
	if s := r.Seeds.Book.Find(rc.Seed); s != nil && s.State == vaultapi.SeedCancelled {
		return Problem{Object: obj, Kind: ProblemLost, Message: fmt.Sprintf("%s needs %d packs that travelled on seed %s, %s: the snapshot cannot be restored",
			what, len(missing), short(s.ID), CancelText(s))}, nil
	}
	s, err := r.Seeds.Holding(ctx, rc.Seed, missing)
	var refusal *SeedRefusal
	switch {
	case err == nil:
		return Problem{Object: obj, Kind: ProblemWaiting, Message: fmt.Sprintf("%s waits on seed %s (exported %s from %s), which holds its %d packs the vault does not: it restores once the seed is imported (cofferd seed import)",
			what, short(s.ID), exportDate(s), hostOf(s), len(missing))}, nil
	case errors.As(err, &refusal):
		return Problem{Object: obj, Kind: ProblemMissing, Message: msg + "; " + err.Error()}, nil
	default:
		return Problem{}, err // the seed's manifest cannot be read
	}
}
