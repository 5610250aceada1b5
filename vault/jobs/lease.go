package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/vault/registry"
)

// Lease is a named job's lease in the vault's store: the replica that holds
// it runs the job; the others skip that round. The job's own decisions are
// safe without it (compare-and-swap), so the lease only saves the work of
// running it twice; one that outlives its holder (killed) expires.
type Lease struct {
	registry.Revision
	Holder  string    `json:"holder"`
	Expires time.Time `json:"expires"`
}

func leaseKey(job string) string { return "vault/leases/" + job + ".json" }

var errLeaseHeld = errors.New("lease held")

// TakeLease takes job's lease for holder until now+ttl when it is free,
// expired or already holder's, and reports whether it did.
func TakeLease(ctx context.Context, sw store.Swapper, job, holder string, now time.Time, ttl time.Duration) (bool, error) {
	_, err := registry.Update(ctx, sw, leaseKey(job), 4<<10, func(cur *Lease, exists bool) (*Lease, error) {
		if exists && cur.Holder != holder && now.Before(cur.Expires) {
			return nil, errLeaseHeld
		}
		return &Lease{Holder: holder, Expires: now.Add(ttl)}, nil
	})
	if errors.Is(err, errLeaseHeld) {
		return false, nil
	}
	return err == nil, err
}

// ReleaseLease gives job's lease up if holder holds it.
func ReleaseLease(ctx context.Context, sw store.Swapper, job, holder string) error {
	_, err := registry.Update(ctx, sw, leaseKey(job), 4<<10, func(cur *Lease, exists bool) (*Lease, error) {
		if !exists || cur.Holder != holder {
			return cur, errLeaseHeld
		}
		return &Lease{Holder: "", Expires: time.Time{}}, nil
	})
	if errors.Is(err, errLeaseHeld) {
		return nil
	}
	return err
}
