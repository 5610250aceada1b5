package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/registry"
)

// The vault's seed records. Each tenant has one document listing its seeds,
// changed only by compare-and-swap (so "one seed in transit at a time" holds
// across replicas), and keeps each registered manifest and its signature
// beside it, as the agent sent them:
//
//	vault/seeds/<tid>.json           SeedBook
//	vault/seeds/<tid>/<seed>.json    SEED.json as registered
//	vault/seeds/<tid>/<seed>.sig     SEED.sig
const maxSeedBook = 4 << 20

// SeedBookKey is where a tenant's seed records live.
func SeedBookKey(tenantID string) string { return "vault/seeds/" + tenantID + ".json" }

func seedManifestKey(tenantID, id string) string {
	return "vault/seeds/" + tenantID + "/" + id + ".json"
}
func seedSigKey(tenantID, id string) string { return "vault/seeds/" + tenantID + "/" + id + ".sig" }

// SeedBook is a tenant's seed records.
type SeedBook struct {
	registry.Revision
	Tenant string              `json:"tenant"`
	Seeds  []vaultapi.SeedInfo `json:"seeds"`
}

// Find returns the seed with id, or nil.
func (b *SeedBook) Find(id string) *vaultapi.SeedInfo {
	if b == nil {
		return nil
	}
	for i := range b.Seeds {
		if b.Seeds[i].ID == id {
			return &b.Seeds[i]
		}
	}
	return nil
}

// Travelling returns the seed still in transit, or nil.
func (b *SeedBook) Travelling() *vaultapi.SeedInfo {
	if b == nil {
		return nil
	}
	for i := range b.Seeds {
		if b.Seeds[i].State == vaultapi.SeedTravelling {
			return &b.Seeds[i]
		}
	}
	return nil
}

// LoadSeedBook reads a tenant's seed records (an empty book when it has
// none).
func LoadSeedBook(ctx context.Context, sw store.Swapper, tenantID string) (*SeedBook, error) {
	b, _, err := sw.ReadVersioned(ctx, SeedBookKey(tenantID), maxSeedBook)
	if errors.Is(err, store.ErrNotFound) {
		return &SeedBook{Tenant: tenantID}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the seeds of tenant %s: %w", tenantID, err)
	}
	book := new(SeedBook)
	if err := jsonStrict(b, book); err != nil {
		return nil, fmt.Errorf("the seed records of tenant %s are corrupt: %w", tenantID, err)
	}
	return book, nil
}

// updateSeedBook applies fn to a copy of the tenant's seed book under
// compare-and-swap; fn returns false for no change.
func updateSeedBook(ctx context.Context, sw store.Swapper, tenantID string, fn func(b *SeedBook) (bool, error)) (*SeedBook, error) {
	return registry.Update(ctx, sw, SeedBookKey(tenantID), maxSeedBook, func(cur *SeedBook, exists bool) (*SeedBook, error) {
		next := &SeedBook{Tenant: tenantID}
		if exists {
			next.Revision, next.Seeds = cur.Revision, slices.Clone(cur.Seeds)
		}
		changed, err := fn(next)
		if err != nil {
			return nil, err
		}
		if !changed && exists {
			return cur, nil
		}
		return next, nil
	})
}

// ParseTenantSeed parses and verifies a manifest for tenant t: its tenant
// is t, and t's signing key signed it. Errors are *vaultapi.Error with
// CodeBadSeed or CodeNoSigningKey and say which.
func ParseTenantSeed(t *registry.Tenant, body, sig []byte) (*seed.Manifest, error) {
	m, err := seed.Parse(body)
	if err != nil {
		return nil, vaultapi.Errorf(vaultapi.CodeBadSeed, "%v", err)
	}
	if m.Tenant != t.ID {
		return nil, vaultapi.Errorf(vaultapi.CodeBadSeed, "seed %s belongs to tenant %q (id %s), not to %q: import it for its own tenant",
			m.ID[:12], m.TenantName, m.Tenant, t.Name)
	}
	if t.SigningKey == "" {
		return nil, vaultapi.Errorf(vaultapi.CodeNoSigningKey,
			"tenant %q has no signing key yet: run coffer init (or any coffer seed command) on one of its agents with this version, then register the seed again", t.Name)
	}
	if m.Signer != t.SigningKey {
		return nil, vaultapi.Errorf(vaultapi.CodeBadSeed, "seed %s is signed by key %s, not by tenant %q's key %s",
			m.ID[:12], crypto.SigningKeyFingerprint(m.Signer), t.Name, crypto.SigningKeyFingerprint(t.SigningKey))
	}
	if err := seed.Verify(t.SigningKey, body, sig); err != nil {
		return nil, vaultapi.Errorf(vaultapi.CodeBadSeed, "the manifest of seed %s: %v", m.ID[:12], err)
	}
	return m, nil
}

// RegisterSeed records a seed in transit for tenant t, from its manifest and
// signature: it checks them (ParseTenantSeed), stores them, and adds the
// seed to the tenant's book in state travelling. Registering the same seed
// again returns its record unchanged; another seed while one travels is
// refused (CodeSeedInTransit).
func RegisterSeed(ctx context.Context, sw store.Swapper, meta store.Store, t *registry.Tenant, body, sig []byte, now time.Time) (*vaultapi.SeedInfo, error) {
	m, err := ParseTenantSeed(t, body, sig)
	if err != nil {
		return nil, err
	}
	book, err := LoadSeedBook(ctx, sw, t.ID)
	if err != nil {
		return nil, err
	}
	if s := book.Find(m.ID); s != nil {
		return s, nil
	}
	if s := book.Travelling(); s != nil {
		return nil, travellingError(t, s)
	}
	// The manifest first: a record is never without it.
	for _, o := range []struct {
		key string
		b   []byte
	}{{seedManifestKey(t.ID, m.ID), body}, {seedSigKey(t.ID, m.ID), sig}} {
		if err := meta.Put(ctx, o.key, bytes.NewReader(o.b), int64(len(o.b))); err != nil {
			return nil, fmt.Errorf("storing the manifest of seed %s: %w", m.ID[:12], err)
		}
	}
	info := SeedInfoOf(m, now)
	var out *vaultapi.SeedInfo
	_, err = updateSeedBook(ctx, sw, t.ID, func(b *SeedBook) (bool, error) {
		if s := b.Find(m.ID); s != nil {
			out = s
			return false, nil
		}
		if s := b.Travelling(); s != nil {
			return false, travellingError(t, s)
		}
		b.Seeds = append(b.Seeds, info)
		out = &info
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func travellingError(t *registry.Tenant, s *vaultapi.SeedInfo) error {
	return vaultapi.Errorf(vaultapi.CodeSeedInTransit,
		"tenant %q has seed %s in transit (exported %s from %s); the vault takes one seed at a time: import that one first",
		t.Name, s.ID[:12], s.Created.UTC().Format(time.DateTime), s.Host)
}

// SeedInfoOf is the record of a newly registered seed.
func SeedInfoOf(m *seed.Manifest, now time.Time) vaultapi.SeedInfo {
	return vaultapi.SeedInfo{ID: m.ID, State: vaultapi.SeedTravelling, Registered: now.UTC(), Created: m.Created, Host: m.Host,
		Objects: len(m.Objects), Bytes: m.Bytes(), Snapshots: slices.Clone(m.Snapshots), Signer: crypto.SigningKeyFingerprint(m.Signer)}
}

// SeedManifest reads a registered seed's manifest and signature.
func SeedManifest(ctx context.Context, meta store.Store, tenantID, id string) (m *seed.Manifest, body, sig []byte, err error) {
	if body, err = store.ReadAllLimit(ctx, meta, seedManifestKey(tenantID, id), seed.MaxManifestSize); err != nil {
		return nil, nil, nil, fmt.Errorf("reading the manifest of seed %s: %w", id, err)
	}
	if sig, err = store.ReadAllLimit(ctx, meta, seedSigKey(tenantID, id), 1<<10); err != nil {
		return nil, nil, nil, fmt.Errorf("reading the signature of seed %s: %w", id, err)
	}
	if m, err = seed.Parse(body); err != nil {
		return nil, nil, nil, fmt.Errorf("the stored manifest of seed %s: %w", id, err)
	}
	return m, body, sig, nil
}

// MarkSeedImported records the import report and turns the seed imported:
// its snapshots restore from now on. Marking it again keeps the first
// report; a seed cancelled meanwhile is refused (CodeSeedCancelled).
func MarkSeedImported(ctx context.Context, sw store.Swapper, tenantID, id string, rep *vaultapi.SeedReport) (*vaultapi.SeedInfo, error) {
	var out vaultapi.SeedInfo
	_, err := updateSeedBook(ctx, sw, tenantID, func(b *SeedBook) (bool, error) {
		s := b.Find(id)
		if s == nil {
			return false, vaultapi.Errorf(vaultapi.CodeNotFound, "no seed %s registered", id)
		}
		switch s.State {
		case vaultapi.SeedImported:
			out = *s
			return false, nil
		case vaultapi.SeedCancelled:
			return false, SeedCancelledError(s)
		}
		s.State, s.Report = vaultapi.SeedImported, rep
		out = *s
		return true, nil
	})
	return &out, err
}

// ConfirmSeed records that the tenant's agent saw the clean import report.
func ConfirmSeed(ctx context.Context, sw store.Swapper, tenantID, id string, now time.Time) (*vaultapi.SeedInfo, error) {
	var out vaultapi.SeedInfo
	_, err := updateSeedBook(ctx, sw, tenantID, func(b *SeedBook) (bool, error) {
		s := b.Find(id)
		switch {
		case s == nil:
			return false, vaultapi.Errorf(vaultapi.CodeNotFound, "no seed %s registered", id)
		case s.State != vaultapi.SeedImported || s.Report == nil || !s.Report.Clean:
			return false, vaultapi.Errorf(vaultapi.CodeBadRequest, "seed %s is %s, without a clean import report: keep the source until it has one", id[:12], s.State)
		case s.Confirmed != nil:
			out = *s
			return false, nil
		}
		t := now.UTC()
		s.Confirmed = &t
		out = *s
		return true, nil
	})
	return &out, err
}

// SeedPacks answers, for the packs of seeds in transit, which seed holds
// them. Manifests never change, so each is read once per process.
type SeedPacks struct {
	meta store.Store
	mu   sync.Mutex
	sets map[string]map[string]bool // seed id -> pack ids
}

// NewSeedPacks returns a SeedPacks reading manifests from meta.
func NewSeedPacks(meta store.Store) *SeedPacks {
	return &SeedPacks{meta: meta, sets: map[string]map[string]bool{}}
}

// Packs returns the pack set of a registered seed.
func (p *SeedPacks) Packs(ctx context.Context, tenantID, id string) (map[string]bool, error) {
	p.mu.Lock()
	set, ok := p.sets[id]
	p.mu.Unlock()
	if ok {
		return set, nil
	}
	m, _, _, err := SeedManifest(ctx, p.meta, tenantID, id)
	if err != nil {
		return nil, err
	}
	set = map[string]bool{}
	for _, id := range m.Packs() {
		set[id] = true
	}
	p.mu.Lock()
	p.sets[id] = set
	p.mu.Unlock()
	return set, nil
}

// jsonStrict decodes a vault document, refusing unknown fields.
func jsonStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
