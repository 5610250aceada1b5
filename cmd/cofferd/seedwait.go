package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/registry"
)

// seedWait refuses snapshot id of tr when it waits on a seed in transit
// (a *vaultapi.Error with CodeSeedPending naming the seed) or needed a
// cancelled one (CodeSeedCancelled).
func (tr *tenantRepo) seedWait(ctx context.Context, id string) error {
	sw, ok := store.As[store.Swapper](tr.vault)
	if !ok {
		return nil
	}
	return jobs.SnapshotWait(ctx, sw, tr.vault, tr.tenant.ID, id)
}

// readySnapshots drops from snaps those waiting on a seed in transit, so a
// drill never picks one; each VM (of name, when set) left with none is
// skipped, giving the newest one's wait as the reason.
func (tr *tenantRepo) readySnapshots(ctx context.Context, snaps []*repo.SnapshotInfo, name string) ([]*repo.SnapshotInfo, []drillSkip, error) {
	sw, ok := store.As[store.Swapper](tr.vault)
	if !ok {
		return snaps, nil, nil
	}
	waits, err := jobs.LoadSeedWaits(ctx, sw, tr.vault, tr.tenant.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("tenant %s: %w", tr.tenant.Name, err)
	}
	var ready []*repo.SnapshotInfo
	blocked := map[string]error{} // VM -> the wait of its newest waiting snapshot
	has := map[string]bool{}
	for _, s := range snaps { // oldest first
		if err := waits.Err(s.ID); err != nil {
			blocked[s.Name] = err
			continue
		}
		ready = append(ready, s)
		has[s.Name] = true
	}
	var skips []drillSkip
	for vm, err := range blocked {
		if !has[vm] && (name == "" || vm == name) {
			skips = append(skips, drillSkip{Tenant: tr.tenant.Name, VM: vm, Reason: err.Error()})
		}
	}
	slices.SortFunc(skips, func(a, b drillSkip) int { return strings.Compare(a.VM, b.VM) })
	return ready, skips, nil
}

// forgetLostPacks drops from r's loaded index the packs of tenant t's
// cancelled seeds that never arrived: its index files still name them,
// and a restore must read the copies later nights stored instead.
func forgetLostPacks(ctx context.Context, vault store.Store, r *repo.Repo, t *registry.Tenant) error {
	sw, ok := store.As[store.Swapper](vault)
	if !ok {
		return nil
	}
	book, err := jobs.LoadSeedBook(ctx, sw, t.ID)
	if err != nil {
		return err
	}
	var ids []pack.ID
	for _, s := range book.Seeds {
		if s.State != vaultapi.SeedCancelled {
			continue
		}
		lost, err := jobs.LostPacks(ctx, vault, t.ID, s.ID)
		if err != nil {
			return err
		}
		for _, h := range lost.Packs {
			id, err := pack.ParseID(h)
			if err != nil {
				return fmt.Errorf("seed %s: %w", s.ID[:12], err)
			}
			ids = append(ids, id)
		}
	}
	r.Index.ForgetPacks(ids)
	return nil
}
