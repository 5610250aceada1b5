package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/cofferhq/coffer/internal/maint"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/registry"
)

// maxGCState bounds a GC state document (marks and tombstones of about
// 100,000 packs).
const maxGCState = 16 << 20

// GCStateKey is where a tenant's GC state lives in the vault's store.
func GCStateKey(tenantID string) string { return "vault/gc/" + tenantID + ".json" }

// LoadGCState reads a tenant's GC state; a tenant never collected has none
// (nil, nil).
func LoadGCState(ctx context.Context, sw store.Swapper, tenantID string) (*maint.GCState, error) {
	st, err := updateGCState(ctx, sw, tenantID, func(cur *maint.GCState) (*maint.GCState, error) { return cur, nil })
	if errors.Is(err, errNoState) {
		return nil, nil
	}
	return st, err
}

var errNoState = errors.New("no GC state")

// updateGCState applies fn to the tenant's GC state under compare-and-swap.
// fn gets nil when there is none, and returns cur itself for no change.
func updateGCState(ctx context.Context, sw store.Swapper, tenantID string, fn func(cur *maint.GCState) (*maint.GCState, error)) (*maint.GCState, error) {
	return registry.Update(ctx, sw, GCStateKey(tenantID), maxGCState, func(cur *maint.GCState, exists bool) (*maint.GCState, error) {
		next, err := fn(cur)
		if err != nil {
			return nil, err
		}
		if next == nil || (!exists && next == cur) {
			return nil, errNoState
		}
		bump(cur, next)
		return next, nil
	})
}

// ClaimPacks is what the vault does before it stores a receipt: the packs
// the receipt names that garbage collection marked are taken back, in one
// compare-and-swap with every other change of the state. A rejection
// names the packs being deleted; the receipt must then not be stored.
func ClaimPacks(ctx context.Context, sw store.Swapper, tenantID string, packs []string) (*vaultapi.ReceiptRejection, error) {
	var rej *vaultapi.ReceiptRejection
	_, err := updateGCState(ctx, sw, tenantID, func(cur *maint.GCState) (*maint.GCState, error) {
		var next *maint.GCState
		next, rej = maint.Claim(cur, packs)
		return next, nil
	})
	if errors.Is(err, errNoState) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return rej, nil
}

// SessionTTL is how long an upload session lives without a heartbeat.
const SessionTTL = time.Hour

// UpdateSession applies fn (Begin, Beat or End of maint.GCState) to the
// tenant's GC state, creating it if needed; fn's bool is passed back.
func UpdateSession(ctx context.Context, sw store.Swapper, tenantID string, fn func(*maint.GCState) (*maint.GCState, bool)) (bool, error) {
	var ok bool
	_, err := registry.Update(ctx, sw, GCStateKey(tenantID), maxGCState, func(cur *maint.GCState, exists bool) (*maint.GCState, error) {
		var next *maint.GCState
		next, ok = fn(cur)
		if next == nil {
			return nil, errNoState
		}
		bump(cur, next)
		return next, nil
	})
	if errors.Is(err, errNoState) {
		return ok, nil
	}
	return ok, err
}

// bump gives a changed state the next revision, so its bytes never recur
// (an S3 version is the content's MD5: an A-B-A change must not let a
// stale compare-and-swap through).
func bump(cur, next *maint.GCState) {
	if next == cur {
		return
	}
	next.Rev = 1
	if cur != nil {
		next.Rev = cur.Rev + 1
	}
}
