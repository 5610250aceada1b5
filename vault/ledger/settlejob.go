package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// JobSettlement is what SettleJob did.
type JobSettlement struct {
	// Committed reservations had their object stored with their size;
	// Dropped ones did not.
	Committed, Dropped int
}

// SettleJob settles, at once and whatever their expiry, the reservations
// of tenantID tagged with job (Meta.Job): those whose object exists with
// the reserved size are committed, the rest dropped. Only the job's holder
// may call it, between runs: a lease (vault/jobs) guarantees that no other
// run of the job still writes those objects, so nothing in flight is lost.
// Untagged reservations (HTTP uploads) are left alone.
func (l *Ledger) SettleJob(ctx context.Context, tenantID, job string) (JobSettlement, error) {
	if !vaultapi.ValidTenantID(tenantID) {
		return JobSettlement{}, fmt.Errorf("ledger: bad tenant id %q", tenantID)
	}
	if job == "" {
		return JobSettlement{}, fmt.Errorf("ledger: SettleJob needs a job name")
	}
	u, err := l.Usage(ctx, tenantID)
	if err != nil {
		return JobSettlement{}, err
	}
	found := map[string]bool{} // reservation id -> object stored with its size
	for _, r := range u.Reserved {
		if r.Job != job {
			continue
		}
		info, err := l.data.Stat(ctx, ObjectKey(tenantID, r.Name))
		switch {
		case err == nil:
			found[r.ID] = info.Size == r.Size
		case errors.Is(err, store.ErrNotFound):
			found[r.ID] = false
		default:
			return JobSettlement{}, fmt.Errorf("settling the reservations of %s for tenant %s: %w", job, tenantID, err)
		}
	}
	if len(found) == 0 {
		return JobSettlement{}, nil
	}
	var out JobSettlement
	err = l.update(ctx, tenantID, func(cur *Usage, exists bool) (*Usage, error) {
		out = JobSettlement{}
		if !exists {
			return cur, nil
		}
		next := clone(cur)
		next.Reserved = slices.DeleteFunc(next.Reserved, func(r Reserved) bool {
			ok, known := found[r.ID]
			if !known {
				return false
			}
			if ok {
				apply(next, r)
				out.Committed++
			} else {
				out.Dropped++
			}
			return true
		})
		if out == (JobSettlement{}) {
			return cur, nil
		}
		next.Updated = l.now()
		return next, nil
	})
	return out, err
}
