package jobs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// What waits on a seed in transit. A snapshot waits iff its receipt names
// a seed that is travelling, or one the tenant's book does not know (the
// vault then cannot tell that its packs ever arrived). Once the seed is
// imported its snapshots count and restore as any other. A snapshot whose
// receipt names a cancelled seed is lost: it neither waits nor counts.

// InTransit reports whether a receipt naming seed id waits on it: the seed
// travels, or the book does not know it.
func (b *SeedBook) InTransit(id string) bool {
	s := b.Find(id)
	return s == nil || s.State == vaultapi.SeedTravelling
}

// Lost reports whether a receipt naming seed id is lost: the seed was
// cancelled.
func (b *SeedBook) Lost(id string) bool {
	s := b.Find(id)
	return s != nil && s.State == vaultapi.SeedCancelled
}

// CancelText says when and why a cancelled seed was cancelled:
// "cancelled on 2026-12-05 (the disk was lost)".
func CancelText(s *vaultapi.SeedInfo) string {
	when := "an unknown date"
	if s.Cancelled != nil {
		when = s.Cancelled.UTC().Format(time.DateOnly)
	}
	reason := s.Reason
	if reason == "" {
		reason = "no reason given"
	}
	return fmt.Sprintf("cancelled on %s (%s)", when, reason)
}

// SeedCancelledError refuses to import or use seed s, cancelled.
func SeedCancelledError(s *vaultapi.SeedInfo) *vaultapi.Error {
	return vaultapi.Errorf(vaultapi.CodeSeedCancelled, "seed %s was %s: export a new seed", short(s.ID), CancelText(s))
}

// SnapshotLostError refuses to restore snapshot snap, which needed seed
// s, cancelled.
func SnapshotLostError(snap string, s *vaultapi.SeedInfo) *vaultapi.Error {
	return vaultapi.Errorf(vaultapi.CodeSeedCancelled, "snapshot %s needed seed %s, %s: it cannot be restored; restore another snapshot",
		short(snap), short(s.ID), CancelText(s))
}

// TenantSeeds is what the vault knows of one tenant's seeds: its book and
// the pack sets of its seeds.
type TenantSeeds struct {
	TenantID string
	Book     *SeedBook
	Packs    *SeedPacks
}

// LoadTenantSeeds reads the tenant's seed book; packs answers the pack
// sets of its seeds (NewSeedPacks over the vault's store).
func LoadTenantSeeds(ctx context.Context, sw store.Swapper, packs *SeedPacks, tenantID string) (*TenantSeeds, error) {
	book, err := LoadSeedBook(ctx, sw, tenantID)
	if err != nil {
		return nil, err
	}
	return &TenantSeeds{TenantID: tenantID, Book: book, Packs: packs}, nil
}

// Holding checks that seed id of the tenant is in transit and holds every
// pack of missing (packs a receipt names that the vault does not hold).
// It returns the seed's record, or a *SeedRefusal saying why not (the
// seed is unknown, imported already, or lacks some of the packs); other
// errors are the store's.
func (ts *TenantSeeds) Holding(ctx context.Context, id string, missing []string) (*vaultapi.SeedInfo, error) {
	s := ts.Book.Find(id)
	switch {
	case s == nil:
		return nil, &SeedRefusal{Reason: fmt.Sprintf("it names seed %s, which is not registered for this tenant (coffer seed export registers it)", short(id))}
	case s.State == vaultapi.SeedCancelled:
		return nil, &SeedRefusal{Reason: fmt.Sprintf("it names seed %s, which was %s and will never arrive", short(id), CancelText(s))}
	case s.State != vaultapi.SeedTravelling:
		return nil, &SeedRefusal{Reason: fmt.Sprintf("it names seed %s, which is imported already, so the vault should hold every pack of it", short(id))}
	}
	set, err := ts.Packs.Packs(ctx, ts.TenantID, id)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range missing {
		if !set[p] {
			out = append(out, p)
		}
	}
	if len(out) > 0 {
		return nil, &SeedRefusal{Reason: fmt.Sprintf("seed %s (in transit) does not hold %d of them either (%s)", short(id), len(out), firstIDs(out))}
	}
	return s, nil
}

// SeedRefusal says why a seed does not excuse a receipt's missing packs.
type SeedRefusal struct{ Reason string }

func (e *SeedRefusal) Error() string { return e.Reason }

// PendingPack returns the seed in transit, else a cancelled seed, that
// holds pack id, or nil: the answer to a read of a pack the vault does not
// hold.
func (ts *TenantSeeds) PendingPack(ctx context.Context, id string) (*vaultapi.SeedInfo, error) {
	for _, state := range []string{vaultapi.SeedTravelling, vaultapi.SeedCancelled} {
		s, err := ts.holder(ctx, id, state)
		if s != nil || err != nil {
			return s, err
		}
	}
	return nil, nil
}

// holder returns the seed in state that holds pack id, or nil.
func (ts *TenantSeeds) holder(ctx context.Context, id, state string) (*vaultapi.SeedInfo, error) {
	for i := range ts.Book.Seeds {
		s := &ts.Book.Seeds[i]
		if s.State != state {
			continue
		}
		set, err := ts.Packs.Packs(ctx, ts.TenantID, s.ID)
		if err != nil {
			return nil, err
		}
		if set[id] {
			return s, nil
		}
	}
	return nil, nil
}

// PackPendingError is the refusal of a read of pack id that travels on s
// (404 naming s when s was cancelled: the pack will never come).
func PackPendingError(id string, s *vaultapi.SeedInfo) *vaultapi.Error {
	if s.State == vaultapi.SeedCancelled {
		return vaultapi.Errorf(vaultapi.CodeNotFound, "no object: pack %s travelled on seed %s, %s; it will never arrive", id, short(s.ID), CancelText(s))
	}
	return vaultapi.Errorf(vaultapi.CodeSeedPending,
		"pack %s travels on seed %s (exported %s from %s); the vault has not imported it yet: restores of snapshots that need it wait for `cofferd seed import`",
		id, short(s.ID), exportDate(s), hostOf(s))
}

// SnapshotPendingError is the refusal to restore snapshot snap, which
// waits on seed id (s its record, nil when the book does not know it).
func SnapshotPendingError(snap, id string, s *vaultapi.SeedInfo) *vaultapi.Error {
	if s == nil {
		return vaultapi.Errorf(vaultapi.CodeSeedPending,
			"snapshot %s waits on seed %s, which is not registered with the vault: it cannot be restored until that seed is registered and imported (cofferd seed import); restore an older snapshot",
			short(snap), short(id))
	}
	return vaultapi.Errorf(vaultapi.CodeSeedPending,
		"snapshot %s waits on seed %s (exported %s from %s), which the vault has not imported yet: it can be restored once `cofferd seed import` has run; restore an older snapshot until then",
		short(snap), short(id), exportDate(s), hostOf(s))
}

func exportDate(s *vaultapi.SeedInfo) string { return s.Created.UTC().Format(time.DateOnly) }

func hostOf(s *vaultapi.SeedInfo) string {
	if s.Host == "" {
		return "an unnamed host"
	}
	return s.Host
}

func short(id string) string { return id[:min(12, len(id))] }

// firstIDs names at most three of ids.
func firstIDs(ids []string) string {
	if len(ids) <= 3 {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:3], ", "), len(ids)-3)
}

// seedStop is why snapshot snap, whose receipt names seed id, cannot be
// restored: it waits on the seed, or the seed was cancelled; else nil.
func seedStop(book *SeedBook, snap, id string) error {
	switch {
	case book.Lost(id):
		return SnapshotLostError(snap, book.Find(id))
	case book.InTransit(id):
		return SnapshotPendingError(snap, id, book.Find(id))
	}
	return nil
}

// SnapshotWait returns a *vaultapi.Error with CodeSeedPending when the
// tenant's snapshot waits on a seed in transit, with CodeSeedCancelled
// when it needed a cancelled seed, and nil when neither (or it has no
// receipt: the vault then knows of no seed it needs). data is the vault's
// data store, sw its compare-and-swap for the seed book.
func SnapshotWait(ctx context.Context, sw store.Swapper, data store.Store, tenantID, snapshotID string) error {
	book, err := LoadSeedBook(ctx, sw, tenantID)
	if err != nil {
		return err
	}
	sub, err := store.ReadOnlySub(data, tenantPrefix(tenantID))
	if err != nil {
		return err
	}
	var names []string
	if err := sub.List(ctx, repo.ReceiptsPrefix, func(i store.Info) error {
		names = append(names, i.Name)
		return nil
	}); err != nil {
		return fmt.Errorf("listing the receipts of tenant %s: %w", tenantID, err)
	}
	for _, name := range names {
		rc, err := repo.LoadReceipt(ctx, sub, name)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue // unreadable: cofferd check reports it
		}
		if rc.Snapshot == snapshotID && rc.Seed != "" {
			if err := seedStop(book, snapshotID, rc.Seed); err != nil {
				return err
			}
		}
	}
	return nil
}

// SeedWaits are the snapshots of one tenant that wait on a seed in
// transit or needed a cancelled one: a drill skips them.
type SeedWaits struct {
	book    *SeedBook
	waiting map[string]string // snapshot id -> seed id
}

// LoadSeedWaits reads every receipt of the tenant (unreadable ones are
// skipped: cofferd check reports them) and its seed book.
func LoadSeedWaits(ctx context.Context, sw store.Swapper, data store.Store, tenantID string) (*SeedWaits, error) {
	book, err := LoadSeedBook(ctx, sw, tenantID)
	if err != nil {
		return nil, err
	}
	sub, err := store.ReadOnlySub(data, tenantPrefix(tenantID))
	if err != nil {
		return nil, err
	}
	rcs, err := repo.Receipts(ctx, sub, func(string, error) {})
	if err != nil {
		return nil, fmt.Errorf("reading the receipts of tenant %s: %w", tenantID, err)
	}
	w := &SeedWaits{book: book, waiting: map[string]string{}}
	for _, rc := range rcs {
		if rc.Seed != "" && (book.InTransit(rc.Seed) || book.Lost(rc.Seed)) {
			w.waiting[rc.Snapshot] = rc.Seed
		}
	}
	return w, nil
}

// Err is SnapshotWait's answer for snapshot id.
func (w *SeedWaits) Err(id string) error {
	seedID, ok := w.waiting[id]
	if !ok {
		return nil
	}
	return seedStop(w.book, id, seedID)
}
