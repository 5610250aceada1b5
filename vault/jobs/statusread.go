package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/cofferhq/coffer/internal/drill"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// RunSource returns a tenant's agent run records (AgentRuns reads those
// coffer agent stores). With none, StatusReader.Runs is nil and the report
// says "no run history".
type RunSource func(ctx context.Context, tenantID string) ([]RunRecord, error)

// StatusReader reads what status is computed from out of the vault's
// stores, without any tenant's keys. It keeps what it parsed of receipts
// and drill evidence by object name (receipts are content-named and
// evidence is stored create-only: neither changes under its name), so a
// status computed again reads only what is new. It is safe for concurrent
// use.
type StatusReader struct {
	Data   store.Store   // the vault's data store
	Meta   store.Swapper // the vault's state documents (GC state)
	Ledger *ledger.Ledger
	Runs   RunSource // nil: no run history
	Log    *slog.Logger

	mu       sync.Mutex
	receipts map[string]map[string]ReceiptSummary // tenant id -> object name -> summary
	drills   map[string]map[string]*drill.Evidence
}

// Status reads the tenants' inputs and computes their status at now.
func (s *StatusReader) Status(ctx context.Context, tenants []*registry.Tenant, now time.Time) (*StatusReport, error) {
	in := make([]*TenantInput, 0, len(tenants))
	for _, t := range tenants {
		ti, err := s.Read(ctx, t)
		if err != nil {
			return nil, err
		}
		in = append(in, ti)
	}
	return ComputeStatus(in, now), nil
}

// Read gathers one tenant's inputs. A receipt or evidence object that
// cannot be read is counted or skipped (and logged), never fatal; a store
// that cannot be listed is.
func (s *StatusReader) Read(ctx context.Context, t *registry.Tenant) (*TenantInput, error) {
	ti := &TenantInput{Tenant: t}
	sub, err := store.ReadOnlySub(s.Data, tenantPrefix(t.ID))
	if err != nil {
		return nil, err
	}
	if err := s.readReceipts(ctx, sub, ti); err != nil {
		return nil, err
	}
	if err := s.markWaiting(ctx, ti); err != nil {
		return nil, err
	}
	if ti.Orphans, err = countOrphans(ctx, sub, ti.Receipts); err != nil {
		return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
	}
	if err := s.readUsage(ctx, ti); err != nil {
		return nil, err
	}
	if ti.Drills, err = s.readDrills(ctx, t); err != nil {
		return nil, err
	}
	if s.Runs != nil {
		if ti.Runs, err = s.Runs(ctx, t.ID); err != nil {
			return nil, fmt.Errorf("tenant %s: reading run history: %w", t.Name, err)
		}
		ti.RunHistory = true
	}
	gc, err := LoadGCState(ctx, s.Meta, t.ID)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: reading the GC state: %w", t.Name, err)
	}
	if gc != nil {
		ti.GCLastRun = gc.LastRun
	}
	return ti, nil
}

func (s *StatusReader) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// cached returns the tenant's cache in m, replaced by next once a read is
// done (so names gone from the store leave it).
func cached[V any](s *StatusReader, m *map[string]map[string]V, tenantID string) map[string]V {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *m == nil {
		*m = map[string]map[string]V{}
	}
	return (*m)[tenantID]
}

func keep[V any](s *StatusReader, m map[string]map[string]V, tenantID string, next map[string]V) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m[tenantID] = next
}

// readReceipts summarises every receipt of the tenant.
func (s *StatusReader) readReceipts(ctx context.Context, sub store.Store, ti *TenantInput) error {
	var names []string
	err := sub.List(ctx, repo.ReceiptsPrefix, func(i store.Info) error {
		names = append(names, i.Name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing receipts of tenant %s: %w", ti.Tenant.Name, err)
	}
	old := cached(s, &s.receipts, ti.Tenant.ID)
	next := make(map[string]ReceiptSummary, len(names))
	for _, name := range names {
		sum, ok := old[name]
		if !ok {
			rc, err := repo.LoadReceipt(ctx, sub, name)
			if ctx.Err() != nil {
				// Keep what was parsed: a status cut short by its deadline
				// (a first scrape of a large vault) goes on from here.
				maps.Copy(next, old)
				keep(s, s.receipts, ti.Tenant.ID, next)
				return ctx.Err()
			}
			if err != nil {
				ti.Unreadable++
				s.log().Warn("receipt unreadable for status", "tenant", ti.Tenant.Name, "object", name, "err", err.Error())
				continue
			}
			sum = ReceiptSummary{Name: rc.Name, Time: rc.Time, SeedID: rc.Seed, Snapshot: rc.Snapshot}
		}
		next[name] = sum
		ti.Receipts = append(ti.Receipts, sum)
	}
	keep(s, s.receipts, ti.Tenant.ID, next)
	return nil
}

// markWaiting sets Seed on the receipts that wait on a seed in transit,
// Lost on those that needed a cancelled seed.
// The summaries are cached without it: a seed's import changes the answer.
func (s *StatusReader) markWaiting(ctx context.Context, ti *TenantInput) error {
	var book *SeedBook
	for i := range ti.Receipts {
		rc := &ti.Receipts[i]
		if rc.SeedID == "" {
			continue
		}
		if book == nil {
			var err error
			if book, err = LoadSeedBook(ctx, s.Meta, ti.Tenant.ID); err != nil {
				return fmt.Errorf("tenant %s: %w", ti.Tenant.Name, err)
			}
		}
		rc.Seed, rc.Lost = book.InTransit(rc.SeedID), book.Lost(rc.SeedID)
	}
	return nil
}

// countOrphans counts the snapshots no receipt describes.
func countOrphans(ctx context.Context, sub store.Store, receipts []ReceiptSummary) (int, error) {
	have := make(map[string]bool, len(receipts))
	for _, rc := range receipts {
		have[rc.Snapshot] = true
	}
	n := 0
	err := sub.List(ctx, repo.SnapshotsPrefix, func(i store.Info) error {
		if !have[strings.TrimPrefix(i.Name, repo.SnapshotsPrefix)] {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("listing snapshots: %w", err)
	}
	return n, nil
}

// readUsage copies the ledger's figures (none without a ledger).
func (s *StatusReader) readUsage(ctx context.Context, ti *TenantInput) error {
	if s.Ledger == nil {
		return nil
	}
	u, err := s.Ledger.Usage(ctx, ti.Tenant.ID)
	if err != nil {
		return fmt.Errorf("tenant %s: %w", ti.Tenant.Name, err)
	}
	ti.StoredBytes, ti.LogicalBytes, ti.DataBytes = u.StoredBytes, u.LogicalBytes, u.DataBytes
	return nil
}

// readDrills reads the tenant's drill evidence: what the vault ran, and
// what the tenant's agent stored in its repository (vetted as the agent's).
func (s *StatusReader) readDrills(ctx context.Context, t *registry.Tenant) ([]*drill.Evidence, error) {
	old := cached(s, &s.drills, t.ID)
	next := map[string]*drill.Evidence{}
	vaultRun := func(e *drill.Evidence) error {
		if e.RunBy != drill.ByVault || e.TenantID != t.ID {
			return fmt.Errorf("is not the vault's evidence of tenant %s", t.ID)
		}
		return nil
	}
	agentRun := func(e *drill.Evidence) error {
		if e.RunBy != drill.ByAgent {
			return fmt.Errorf("says run_by %s, but it is in the tenant's repository", e.RunBy)
		}
		return nil
	}
	for _, src := range []struct {
		prefix string
		check  func(*drill.Evidence) error
	}{{drill.VaultTenantPrefix(t.ID), vaultRun}, {tenantPrefix(t.ID) + drill.AgentPrefix, agentRun}} {
		if err := s.readEvidence(ctx, t, src.prefix, src.check, old, next); err != nil {
			return nil, err
		}
	}
	keep(s, s.drills, t.ID, next)
	out := make([]*drill.Evidence, 0, len(next))
	for _, e := range next {
		out = append(out, e)
	}
	return out, nil
}

// readEvidence reads the evidence objects under prefix into next, reusing
// what old has; unreadable ones are logged and skipped.
func (s *StatusReader) readEvidence(ctx context.Context, t *registry.Tenant, prefix string, check func(*drill.Evidence) error,
	old, next map[string]*drill.Evidence) error {
	var names []string
	err := s.Data.List(ctx, prefix, func(i store.Info) error {
		names = append(names, i.Name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing the drill evidence of tenant %s: %w", t.Name, err)
	}
	for _, name := range names {
		if e, ok := old[name]; ok {
			next[name] = e
			continue
		}
		b, err := store.ReadAllLimit(ctx, s.Data, name, drill.MaxEvidenceSize)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var e *drill.Evidence
		if err == nil {
			e, err = drill.Parse(b)
		}
		if err == nil {
			err = check(e)
		}
		if err != nil {
			s.log().Warn("drill evidence unreadable for status", "tenant", t.Name, "object", name, "err", err.Error())
			continue
		}
		next[name] = e
	}
	return nil
}
