package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
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

// Deps is what a job works with.
type Deps struct {
	Data   store.Store   // the vault's data store: repos/<tenant id>/...
	Meta   store.Swapper // the vault's state documents
	Ledger *ledger.Ledger
	Clock  clock.Clock
	Log    *slog.Logger
	// AfterPhase, if set, is called after each phase that changed the
	// state ("marked", "batched", "deleted", "forgotten"): the crash tests
	// kill the process there.
	AfterPhase func(phase string)
}

func (d Deps) after(phase string) {
	if d.AfterPhase != nil {
		d.AfterPhase(phase)
	}
}

// GCOptions are the rules of a garbage collection.
type GCOptions struct {
	Grace        time.Duration // default maint.DefaultGrace
	SessionTTL   time.Duration // default SessionTTL
	TombstoneTTL time.Duration // default 30 days
	DryRun       bool          // decide and report; change nothing
}

func (o GCOptions) params(now time.Time) maint.GCParams {
	p := maint.GCParams{Now: now, Grace: o.Grace, SessionTTL: o.SessionTTL, TombstoneTTL: o.TombstoneTTL}
	if p.Grace <= 0 {
		p.Grace = maint.DefaultGrace
	}
	if p.SessionTTL <= 0 {
		p.SessionTTL = SessionTTL
	}
	if p.TombstoneTTL <= 0 {
		p.TombstoneTTL = 30 * 24 * time.Hour
	}
	return p
}

// GCReport says what a collection found and did.
type GCReport struct {
	Tenant       string       `json:"tenant"`
	Receipts     int          `json:"receipts"`
	Packs        int          `json:"packs"`
	Plan         maint.GCPlan `json:"plan"`
	Deleted      []string     `json:"deleted,omitempty"`
	DeletedBytes int64        `json:"deleted_bytes"`
	// Postponed counts condemned packs whose object lock has not ended:
	// they go at a later run once it has.
	Postponed int `json:"postponed,omitempty"`
	// Locks is what extending the locks of needed packs did.
	Locks  *LockExtension `json:"locks,omitempty"`
	DryRun bool           `json:"dry_run,omitempty"`
}

// ErrUnsafe is wrapped when a collection refuses to run for a tenant
// because what it would decide from cannot be trusted.
var ErrUnsafe = errors.New("garbage collection refused")

// tenantPrefix is where a tenant's repository lives in the data store.
func tenantPrefix(tenantID string) string { return "repos/" + tenantID + "/" }

// CollectGarbage runs one garbage collection for a tenant: it reads every
// receipt and lists the packs, marks the packs no receipt needs, condemns
// those marked for longer than the grace, and deletes the condemned ones
// whose object lock has ended, taking them off the ledger once per batch.
// It refuses to run while a snapshot has no receipt or a receipt cannot be
// read, since it cannot know what those need.
func CollectGarbage(ctx context.Context, d Deps, tenantID string, o GCOptions) (*GCReport, error) {
	if !vaultapi.ValidTenantID(tenantID) {
		return nil, fmt.Errorf("bad tenant id %q", tenantID)
	}
	rep := &GCReport{Tenant: tenantID, DryRun: o.DryRun}
	needed, err := neededPacks(ctx, d, tenantID, rep)
	if err != nil {
		return nil, err
	}
	packs, err := listPacks(ctx, d.Data, tenantID)
	if err != nil {
		return nil, err
	}
	rep.Packs = len(packs)
	p := o.params(clock.Or(d.Clock).Now().UTC())
	if o.DryRun {
		cur, err := LoadGCState(ctx, d.Meta, tenantID)
		if err != nil {
			return nil, err
		}
		_, rep.Plan = maint.Plan(cur, needed, packs, p)
		return rep, nil
	}
	_, err = updateGCState(ctx, d.Meta, tenantID, func(cur *maint.GCState) (*maint.GCState, error) {
		next, plan := maint.Plan(cur, needed, packs, p)
		rep.Plan = plan
		return next, nil
	})
	if err != nil {
		return nil, fmt.Errorf("tenant %s: recording the collection: %w", tenantID, err)
	}
	d.after("marked")
	if rep.Locks, err = extendLocks(ctx, d, tenantID, needed, packs, p.Now); err != nil {
		return nil, err
	}
	return rep, deleteCondemned(ctx, d, tenantID, rep)
}

// neededPacks reads the receipts and returns every pack they name. A
// snapshot without a receipt, or a receipt that cannot be read, makes the
// collection unsafe.
func neededPacks(ctx context.Context, d Deps, tenantID string, rep *GCReport) (map[string]bool, error) {
	sub, err := store.ReadOnlySub(d.Data, tenantPrefix(tenantID))
	if err != nil {
		return nil, err
	}
	var bad []string
	receipts, err := repo.Receipts(ctx, sub, func(name string, err error) { bad = append(bad, fmt.Sprintf("%s (%v)", name, err)) })
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%w for tenant %s: unreadable receipts: %s", ErrUnsafe, tenantID, strings.Join(bad, "; "))
	}
	rep.Receipts = len(receipts)
	have := map[string]bool{}
	needed := map[string]bool{}
	for _, rc := range receipts {
		have[rc.Snapshot] = true
		for _, p := range rc.Packs {
			needed[p] = true
		}
	}
	var orphans []string
	err = sub.List(ctx, repo.SnapshotsPrefix, func(i store.Info) error {
		if id := strings.TrimPrefix(i.Name, repo.SnapshotsPrefix); !have[id] {
			orphans = append(orphans, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing snapshots of tenant %s: %w", tenantID, err)
	}
	if len(orphans) > 0 {
		slices.Sort(orphans)
		return nil, fmt.Errorf("%w for tenant %s: %d snapshots have no receipt (the first: %s); they were written by an agent older than receipts: run `coffer snapshots --write-receipts` with that tenant's agent",
			ErrUnsafe, tenantID, len(orphans), orphans[0])
	}
	return needed, nil
}

// listPacks lists a tenant's packs with their sizes and times.
func listPacks(ctx context.Context, data store.Store, tenantID string) ([]maint.PackInfo, error) {
	prefix := tenantPrefix(tenantID)
	var out []maint.PackInfo
	err := data.List(ctx, prefix+repo.DataPrefix, func(i store.Info) error {
		id, err := repo.ParsePackName(strings.TrimPrefix(i.Name, prefix))
		if err != nil {
			return nil // not a pack: check reports it
		}
		out = append(out, maint.PackInfo{ID: id.String(), Size: i.Size, ModTime: i.ModTime})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing packs of tenant %s: %w", tenantID, err)
	}
	return out, nil
}

// deleteCondemned deletes what the state condemned and may go now. The packs are
// first given a batch name in the state; the batch is then deleted, taken
// off the ledger once (Forget is idempotent by batch) and forgotten. A run
// killed anywhere in between finds the same batch in the state and
// finishes it, so usage stays exact.
func deleteCondemned(ctx context.Context, d Deps, tenantID string, rep *GCReport) error {
	now := clock.Or(d.Clock).Now().UTC()
	cur, err := LoadGCState(ctx, d.Meta, tenantID)
	if err != nil || cur == nil {
		return err
	}
	// A pack under an object lock is never asked to go: it is postponed
	// to when its lock ends.
	locked := map[string]time.Time{}
	for id, dm := range cur.Deleting {
		if dm.Batch != "" || now.Before(dm.NotBefore) {
			continue
		}
		l, err := store.LockInfo(ctx, d.Data, packKey(tenantID, id))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("tenant %s: reading the lock of pack %s: %w", tenantID, id, err)
		}
		if l.Active(now) {
			locked[id] = l.Until
		}
	}
	st, err := updateGCState(ctx, d.Meta, tenantID, func(cur *maint.GCState) (*maint.GCState, error) {
		next := cur
		for id, until := range locked {
			next = next.Postpone(id, until)
		}
		var fresh []string
		for id, dm := range next.Deleting {
			if dm.Batch == "" && (dm.NotBefore.IsZero() || !now.Before(dm.NotBefore)) {
				fresh = append(fresh, id)
			}
		}
		if len(fresh) == 0 {
			return next, nil
		}
		slices.Sort(fresh)
		return next.Batch(fresh, batchName("gc", tenantID, fresh)), nil
	})
	if err != nil {
		return fmt.Errorf("tenant %s: recording a deletion batch: %w", tenantID, err)
	}
	rep.Postponed = len(locked)
	d.after("batched")
	for _, batch := range st.Batches() {
		if err := deleteBatch(ctx, d, tenantID, st, batch, now, rep); err != nil {
			return err
		}
	}
	return nil
}

// packKey is where a tenant's pack is in the vault's store.
func packKey(tenantID, id string) string {
	return tenantPrefix(tenantID) + repo.DataPrefix + id[:2] + "/" + id
}

// deleteBatch deletes one batch, takes it off the ledger and forgets it.
func deleteBatch(ctx context.Context, d Deps, tenantID string, st *maint.GCState, batch string, now time.Time, rep *GCReport) error {
	rm := ledger.Removal{Batch: batch}
	ids := st.InBatch(batch)
	for _, id := range ids {
		if err := d.Data.Delete(ctx, packKey(tenantID, id)); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("tenant %s: deleting pack %s: %w", tenantID, id, err)
		}
		size := st.Deleting[id].Size
		rm.Objects++
		rm.Bytes += size
		rm.Packs++
		rm.PackBytes += size
		rep.Deleted = append(rep.Deleted, id)
		rep.DeletedBytes += size
	}
	d.after("deleted")
	if d.Ledger != nil {
		if err := d.Ledger.Forget(ctx, tenantID, rm); err != nil {
			return fmt.Errorf("tenant %s: taking %d deleted packs off the usage: %w", tenantID, len(ids), err)
		}
	}
	_, err := updateGCState(ctx, d.Meta, tenantID, func(cur *maint.GCState) (*maint.GCState, error) {
		next := cur
		for _, id := range ids {
			next = next.Forgotten(id, now)
		}
		return next, nil
	})
	if err != nil {
		return fmt.Errorf("tenant %s: forgetting deleted packs: %w", tenantID, err)
	}
	d.after("forgotten")
	return nil
}

// batchName names a removal by what it removes, so the same removal
// retried is the same batch.
func batchName(job, tenantID string, ids []string) string {
	h := sha256.New()
	h.Write([]byte(job + "\x00" + tenantID))
	for _, id := range ids {
		h.Write([]byte{0})
		h.Write([]byte(id))
	}
	return job + "-" + hex.EncodeToString(h.Sum(nil))[:32]
}
