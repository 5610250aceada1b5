package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cofferhq/coffer/internal/maint"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/vault/registry"
)

// lockDoc is vault/locks/<tenant id>.json: until when each needed pack's
// lock was last extended. Only garbage collection writes it. A pack not in
// it is locked until its upload time plus the policy's retention.
type lockDoc struct {
	registry.Revision
	Until map[string]time.Time `json:"until"`
}

func lockDocKey(tenantID string) string { return "vault/locks/" + tenantID + ".json" }

// maxLockDoc bounds the document: about 150,000 packs.
const maxLockDoc = 16 << 20

// LockExtension is what one run did to object locks.
type LockExtension struct {
	Due      int `json:"due"`      // needed packs whose lock ends within half the retention
	Extended int `json:"extended"` // locks moved to now plus the retention
	Current  int `json:"current"`  // already locked long enough
	Missing  int `json:"missing"`  // needed but gone (check reports them)
}

// extendLocks keeps the packs retained snapshots need locked: a needed
// pack whose lock ends within half the policy's retention is extended to
// now plus the retention, in one bounded batch. Packs nobody needs are
// never extended, so their locks lapse and garbage collection can delete
// them; new packs are not touched (their upload locked them, and some
// providers refuse an extension right after upload). Without an object
// lock policy it does nothing.
func extendLocks(ctx context.Context, d Deps, tenantID string, needed map[string]bool, packs []maint.PackInfo, now time.Time) (*LockExtension, error) {
	policy, ok := store.LockPolicyOf(d.Data)
	if !ok {
		return nil, nil
	}
	var doc lockDoc
	b, _, err := d.Meta.ReadVersioned(ctx, lockDocKey(tenantID), maxLockDoc)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("vault state %s is corrupt: %w", lockDocKey(tenantID), err)
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	rep := &LockExtension{}
	var due []string
	for _, pk := range packs {
		if !needed[pk.ID] {
			continue
		}
		until := pk.ModTime.Add(policy.Retention)
		if u, ok := doc.Until[pk.ID]; ok && u.After(until) {
			until = u
		}
		if until.Before(now.Add(policy.Retention / 2)) {
			due = append(due, pk.ID)
		}
	}
	rep.Due = len(due)
	if len(due) == 0 {
		return rep, nil
	}
	slices.Sort(due)
	keys := make([]string, len(due))
	for i, id := range due {
		keys[i] = packKey(tenantID, id)
	}
	until := now.Add(policy.Retention)
	er, err := store.ExtendLocks(ctx, d.Data, keys, until, 8)
	rep.Extended, rep.Current, rep.Missing = er.Extended, er.Current, len(er.Missing)
	if err != nil {
		return rep, fmt.Errorf("tenant %s: extending object locks: %w", tenantID, err)
	}
	_, err = registry.Update(ctx, d.Meta, lockDocKey(tenantID), maxLockDoc, func(cur *lockDoc, exists bool) (*lockDoc, error) {
		next := &lockDoc{Until: map[string]time.Time{}}
		if exists {
			maps.Copy(next.Until, cur.Until)
		}
		for id := range next.Until {
			if !needed[id] {
				delete(next.Until, id)
			}
		}
		for _, id := range due {
			next.Until[id] = until
		}
		return next, nil
	})
	return rep, err
}
