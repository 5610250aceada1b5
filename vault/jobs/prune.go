package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/maint"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
)

// MaxFuture is how far past the vault's clock a receipt's time may be
// before retention sets it aside: a snapshot from a machine whose clock is
// wrong would otherwise become its VM's newest and push real ones out.
const MaxFuture = 24 * time.Hour

// PruneOptions are the rules of a prune.
type PruneOptions struct {
	Policies maint.Policies
	Location *time.Location // calendar buckets; UTC when nil
	DryRun   bool
}

// PruneReport says what a prune decided and did.
type PruneReport struct {
	Tenant    string           `json:"tenant"`
	Decisions []maint.Decision `json:"decisions"` // ID is the receipt's object name
	Removed   int              `json:"removed"`
	// Future are receipts dated past the vault's clock by more than
	// MaxFuture: kept, and left out of the policy's decisions.
	Future []string `json:"future,omitempty"`
	// Waiting counts snapshots an earlier run removed whose object lock
	// has not ended: they go once it has.
	Waiting int  `json:"waiting,omitempty"`
	DryRun  bool `json:"dry_run,omitempty"`
}

// receiptObj is a stored receipt and its object.
type receiptObj struct {
	name string
	size int64
	rc   *vaultapi.Receipt
}

// Prune applies a retention policy to a tenant's snapshots, from their
// receipts alone: each snapshot the policy drops is deleted with its
// receipt, and the ledger forgets both, once. The packs they needed are
// left to garbage collection. A prune killed half-way finishes its batch
// when it runs again. An empty policy prunes nothing.
func Prune(ctx context.Context, d Deps, tenantID string, o PruneOptions) (*PruneReport, error) {
	if !vaultapi.ValidTenantID(tenantID) {
		return nil, fmt.Errorf("bad tenant id %q", tenantID)
	}
	if err := o.Policies.CheckSet(); err != nil {
		return nil, fmt.Errorf("tenant %s: %w", tenantID, err)
	}
	rep := &PruneReport{Tenant: tenantID, DryRun: o.DryRun, Decisions: []maint.Decision{}}
	if !o.DryRun {
		if err := finishPrunes(ctx, d, tenantID, rep); err != nil {
			return nil, err
		}
	}
	objs, err := listReceipts(ctx, d.Data, tenantID)
	if err != nil {
		return nil, err
	}
	pending, err := LoadGCState(ctx, d.Meta, tenantID)
	if err != nil {
		return nil, err
	}
	now := clock.Or(d.Clock).Now()
	var items []maint.Item
	byName := map[string]receiptObj{}
	for _, ro := range objs {
		if _, ok := pending.PruningOf(ro.name); ok {
			rep.Waiting++ // decided by an earlier run; its lock has not ended
			continue
		}
		if ro.rc.Time.After(now.Add(MaxFuture)) {
			rep.Future = append(rep.Future, ro.name)
			continue
		}
		byName[ro.name] = ro
		items = append(items, maint.Item{ID: ro.name, Group: ro.rc.Name, Time: ro.rc.Time})
	}
	rep.Decisions = o.Policies.Apply(items, o.Location)
	_, drop := maint.Split(rep.Decisions)
	if o.DryRun {
		rep.Removed = len(drop)
		return rep, nil
	}
	if len(drop) == 0 {
		return rep, nil
	}
	batch, err := recordPrune(ctx, d, tenantID, drop, byName)
	if err != nil {
		return nil, err
	}
	n, err := finishPrune(ctx, d, tenantID, batch)
	rep.Removed += n
	return rep, err
}

// listReceipts reads every receipt of a tenant with its object's size. An
// unreadable one stops the prune: it may describe a snapshot the policy
// would keep, and deciding without it could drop the wrong ones.
func listReceipts(ctx context.Context, data store.Store, tenantID string) ([]receiptObj, error) {
	sub, err := store.ReadOnlySub(data, tenantPrefix(tenantID))
	if err != nil {
		return nil, err
	}
	var out []receiptObj
	err = sub.List(ctx, repo.ReceiptsPrefix, func(i store.Info) error {
		out = append(out, receiptObj{name: i.Name, size: i.Size})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing receipts of tenant %s: %w", tenantID, err)
	}
	for i := range out {
		rc, err := repo.LoadReceipt(ctx, sub, out[i].name)
		if err != nil {
			return nil, fmt.Errorf("%w for tenant %s: %v", ErrUnsafe, tenantID, err)
		}
		out[i].rc = rc
	}
	return out, nil
}

// recordPrune records the dropped snapshots as one batch in the GC state.
func recordPrune(ctx context.Context, d Deps, tenantID string, drop []maint.Decision, byName map[string]receiptObj) (string, error) {
	names := make([]string, 0, len(drop))
	items := map[string]maint.Pruned{}
	for _, dc := range drop {
		names = append(names, dc.ID)
	}
	slices.Sort(names)
	batch := batchName("prune", tenantID, names)
	for _, name := range names {
		ro := byName[name]
		p := maint.Pruned{Snapshot: ro.rc.Snapshot, Batch: batch, Objects: 1, Bytes: ro.size}
		info, err := d.Data.Stat(ctx, tenantPrefix(tenantID)+repo.SnapshotsPrefix+ro.rc.Snapshot)
		switch {
		case err == nil:
			p.Objects++
			p.Bytes += info.Size
			for _, dk := range ro.rc.Disks {
				p.Logical += dk.Size
				p.Data += dk.DataBytes
			}
		case !errors.Is(err, store.ErrNotFound):
			return "", fmt.Errorf("tenant %s: %w", tenantID, err)
		}
		items[name] = p
	}
	_, err := updateGCState(ctx, d.Meta, tenantID, func(cur *maint.GCState) (*maint.GCState, error) {
		return cur.StartPrune(items), nil
	})
	if err != nil {
		return "", fmt.Errorf("tenant %s: recording the prune: %w", tenantID, err)
	}
	d.after("prune-recorded")
	return batch, nil
}

// finishPrunes finishes every prune batch a killed run left.
func finishPrunes(ctx context.Context, d Deps, tenantID string, rep *PruneReport) error {
	st, err := LoadGCState(ctx, d.Meta, tenantID)
	if err != nil || st == nil {
		return err
	}
	var batches []string
	for _, p := range st.Pruning {
		if !slices.Contains(batches, p.Batch) {
			batches = append(batches, p.Batch)
		}
	}
	slices.Sort(batches)
	for _, b := range batches {
		n, err := finishPrune(ctx, d, tenantID, b)
		rep.Removed += n
		if err != nil {
			return err
		}
	}
	return nil
}

// finishPrune deletes a recorded batch (snapshots first, then receipts, so
// a snapshot never outlives the receipt that keeps its packs), takes it off
// the ledger once, and forgets it.
func finishPrune(ctx context.Context, d Deps, tenantID, batch string) (int, error) {
	st, err := LoadGCState(ctx, d.Meta, tenantID)
	if err != nil {
		return 0, err
	}
	rm := ledger.Removal{Batch: batch}
	var names []string
	for name, p := range st.Pruning {
		if p.Batch != batch {
			continue
		}
		names = append(names, name)
		rm.Objects += p.Objects
		rm.Bytes += p.Bytes
		rm.Logical += p.Logical
		rm.Data += p.Data
		if p.Objects > 1 {
			rm.Snapshots++
		}
	}
	slices.Sort(names)
	prefix := tenantPrefix(tenantID)
	for _, name := range names {
		for _, key := range []string{prefix + repo.SnapshotsPrefix + st.Pruning[name].Snapshot, prefix + name} {
			err := d.Data.Delete(ctx, key)
			if errors.Is(err, store.ErrLocked) {
				// Under an object lock: the batch waits, recorded, and a
				// later run finishes it once the lock has ended.
				return 0, nil
			}
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return 0, fmt.Errorf("tenant %s: deleting %s: %w", tenantID, strings.TrimPrefix(key, prefix), err)
			}
		}
	}
	d.after("pruned")
	if d.Ledger != nil {
		if err := d.Ledger.Forget(ctx, tenantID, rm); err != nil {
			return 0, fmt.Errorf("tenant %s: taking pruned snapshots off the usage: %w", tenantID, err)
		}
	}
	_, err = updateGCState(ctx, d.Meta, tenantID, func(cur *maint.GCState) (*maint.GCState, error) {
		return cur.PruneDone(batch), nil
	})
	return len(names), err
}
