package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/maint"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// State document names and limits.
const (
	FormatName    = "vault/format"
	namesPrefix   = "vault/names/"
	tenantsPrefix = "vault/tenants/"
	tokensPrefix  = "vault/tokens/"
	credsPrefix   = "vault/creds/"

	maxDoc = 64 << 10

	// DefaultTokenTTL is how long an enrollment token stays valid.
	DefaultTokenTTL = 7 * 24 * time.Hour
)

// Tenant is vault/tenants/<id>.json.
type Tenant struct {
	Revision
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Quota       int64     `json:"quota"` // bytes; 0 = no quota
	State       string    `json:"state"` // vaultapi.StateActive or StateSuspended
	SuspendedAt time.Time `json:"suspended_at,omitzero"`
	Reason      string    `json:"reason,omitempty"`
	// Escrow is the tenant's escrow choice and slot (escrow.go).
	Escrow vaultapi.Escrow `json:"escrow,omitzero"`
	// RTO is the tenant's recovery time objective, which restore drills
	// measure against (cofferd drill); 0: none.
	RTO time.Duration `json:"rto_ns,omitempty"`
	// RPO is the tenant's recovery point objectives (cofferd tenant
	// set-rpo), which cofferd status measures against (rpo.go); nil: none.
	RPO *RPO `json:"rpo,omitempty"`
	// Retention is the tenant's retention policy (cofferd tenant
	// set-retention), applied by cofferd prune; nil: nothing is pruned.
	// TimeZone names the zone its calendar buckets use ("" is UTC).
	Retention *maint.Policies `json:"retention,omitempty"`
	TimeZone  string          `json:"time_zone,omitempty"`
	// SigningKey is the tenant's public seed signing key
	// (crypto.PublicKeyText), learned once from its agent (SetSigningKey).
	SigningKey string    `json:"signing_key,omitempty"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
}

// Suspended reports whether the tenant is suspended.
func (t *Tenant) Suspended() bool { return t.State == vaultapi.StateSuspended }

// Registry is the tenant, token and credential registry.
type Registry struct {
	meta  store.Store
	sw    store.Swapper
	clock clock.Clock
}

// New returns a registry over meta, which must support conditional writes
// (store.Swapper). clock nil means the wall clock.
func New(meta store.Store, clk clock.Clock) (*Registry, error) {
	sw, ok := store.As[store.Swapper](meta)
	if !ok {
		return nil, fmt.Errorf("store %s does not support conditional writes, which the vault needs for its state", meta.Location())
	}
	return &Registry{meta: meta, sw: sw, clock: clock.Or(clk)}, nil
}

// Swapper returns the store's compare-and-swap interface.
func (r *Registry) Swapper() store.Swapper { return r.sw }

func (r *Registry) now() time.Time { return r.clock.Now().UTC().Truncate(time.Millisecond) }

type formatDoc struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
}

// EnsureFormat creates vault/format if it is missing and checks it
// otherwise. Only `cofferd init` and `serve --init` create a vault; other
// commands use CheckFormat.
func (r *Registry) EnsureFormat(ctx context.Context) error {
	err := create(ctx, r.sw, FormatName, formatDoc{"cofferd-vault", 1})
	if err == nil {
		return nil
	}
	if !errors.Is(err, store.ErrConflict) && !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("writing %s: %w", FormatName, err)
	}
	return r.CheckFormat(ctx)
}

// CheckFormat checks that the store holds a vault this cofferd knows. The
// error Is store.ErrNotFound when there is no vault/format.
func (r *Registry) CheckFormat(ctx context.Context) error {
	f, err := read[formatDoc](ctx, r.sw, FormatName, maxDoc)
	if err != nil {
		return err
	}
	if f.Format != "cofferd-vault" || f.Version != 1 {
		return fmt.Errorf("store %s holds vault format %q version %d; this cofferd knows cofferd-vault version 1", r.meta.Location(), f.Format, f.Version)
	}
	return nil
}

type nameDoc struct {
	Tenant string `json:"tenant"`
}

func tenantKey(id string) string { return tenantsPrefix + id + ".json" }

// CreateTenant creates a tenant with a unique name and returns it with a
// first enrollment token (shown once; only its hash is stored). quota is in
// bytes, 0 for none; tokenTTL 0 means DefaultTokenTTL.
func (r *Registry) CreateTenant(ctx context.Context, name string, quota int64, tokenTTL time.Duration) (*Tenant, vaultapi.Secret, time.Time, error) {
	if !vaultapi.ValidTenantName(name) {
		return nil, "", time.Time{}, vaultapi.Errorf(vaultapi.CodeBadRequest,
			"tenant name %q is not valid: use 1 to 63 lower-case letters, digits and '-', starting and ending with a letter or digit", clip(name))
	}
	if quota < 0 {
		return nil, "", time.Time{}, vaultapi.Errorf(vaultapi.CodeBadRequest, "quota must not be negative")
	}
	if err := r.EnsureFormat(ctx); err != nil {
		return nil, "", time.Time{}, err
	}
	if _, err := read[nameDoc](ctx, r.sw, namesPrefix+name, maxDoc); err == nil {
		return nil, "", time.Time{}, vaultapi.Errorf(vaultapi.CodeExists, "tenant name %q is taken", name)
	}
	id, err := vaultapi.NewID()
	if err != nil {
		return nil, "", time.Time{}, err
	}
	now := r.now()
	t := &Tenant{ID: id, Name: name, Quota: quota, State: vaultapi.StateActive, Created: now, Updated: now}
	// The tenant document first, then the name claim: a crash in between
	// leaves an unnamed document that List and Resolve ignore, never a
	// name that points nowhere.
	if err := create(ctx, r.sw, tenantKey(id), t); err != nil {
		return nil, "", time.Time{}, fmt.Errorf("creating tenant %s: %w", name, err)
	}
	if err := create(ctx, r.sw, namesPrefix+name, nameDoc{id}); err != nil {
		_ = r.meta.Delete(ctx, tenantKey(id))
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) {
			return nil, "", time.Time{}, vaultapi.Errorf(vaultapi.CodeExists, "tenant name %q is taken", name)
		}
		return nil, "", time.Time{}, fmt.Errorf("claiming tenant name %s: %w", name, err)
	}
	tok, exp, err := r.NewToken(ctx, id, tokenTTL)
	if err != nil {
		return nil, "", time.Time{}, err
	}
	return t, tok, exp, nil
}

// Tenant loads a tenant by id (a *vaultapi.Error not_found when missing).
func (r *Registry) Tenant(ctx context.Context, id string) (*Tenant, error) {
	if !vaultapi.ValidTenantID(id) {
		return nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "%q is not a tenant id", clip(id))
	}
	t, err := read[Tenant](ctx, r.sw, tenantKey(id), maxDoc)
	if errors.Is(err, store.ErrNotFound) {
		return nil, vaultapi.Errorf(vaultapi.CodeNotFound, "no tenant with id %s", id)
	}
	return t, err
}

// named reports whether t owns its name (a tenant whose creation was cut
// short between its document and its name claim does not).
func (r *Registry) named(ctx context.Context, t *Tenant) (bool, error) {
	n, err := read[nameDoc](ctx, r.sw, namesPrefix+t.Name, maxDoc)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return n.Tenant == t.ID, nil
}

// Resolve finds a tenant by name or by id.
func (r *Registry) Resolve(ctx context.Context, nameOrID string) (*Tenant, error) {
	if vaultapi.ValidTenantID(nameOrID) {
		t, err := r.Tenant(ctx, nameOrID)
		if err == nil {
			if ok, err := r.named(ctx, t); err != nil || ok {
				return t, err
			}
		} else if !isCode(err, vaultapi.CodeNotFound) {
			return nil, err
		}
	}
	if !vaultapi.ValidTenantName(nameOrID) {
		return nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "%q is neither a tenant name nor a tenant id", clip(nameOrID))
	}
	n, err := read[nameDoc](ctx, r.sw, namesPrefix+nameOrID, maxDoc)
	if errors.Is(err, store.ErrNotFound) {
		return nil, vaultapi.Errorf(vaultapi.CodeNotFound, "no tenant named %q (cofferd tenant list shows them)", nameOrID)
	}
	if err != nil {
		return nil, err
	}
	return r.Tenant(ctx, n.Tenant)
}

// List returns every tenant, sorted by name.
func (r *Registry) List(ctx context.Context) ([]*Tenant, error) {
	var ids []string
	err := r.meta.List(ctx, tenantsPrefix, func(i store.Info) error {
		id, ok := strings.CutSuffix(strings.TrimPrefix(i.Name, tenantsPrefix), ".json")
		if ok && vaultapi.ValidTenantID(id) {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing tenants: %w", err)
	}
	var out []*Tenant
	for _, id := range ids {
		t, err := r.Tenant(ctx, id)
		if isCode(err, vaultapi.CodeNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ok, err := r.named(ctx, t); err != nil {
			return nil, err
		} else if ok {
			out = append(out, t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// UpdateTenant applies fn to a copy of the tenant and stores the result with
// a compare-and-swap. fn may run several times; it must set values, not
// add to them. When fn changes nothing, nothing is written.
func (r *Registry) UpdateTenant(ctx context.Context, id string, fn func(*Tenant) error) (*Tenant, error) {
	if !vaultapi.ValidTenantID(id) {
		return nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "%q is not a tenant id", clip(id))
	}
	return Update(ctx, r.sw, tenantKey(id), maxDoc, func(cur *Tenant, exists bool) (*Tenant, error) {
		if !exists {
			return nil, vaultapi.Errorf(vaultapi.CodeNotFound, "no tenant with id %s", id)
		}
		next := *cur
		if err := fn(&next); err != nil {
			return nil, err
		}
		next.Revision, next.Updated = cur.Revision, cur.Updated
		if next == *cur {
			return cur, nil
		}
		next.ID, next.Name, next.Created = cur.ID, cur.Name, cur.Created
		next.Updated = r.now()
		return &next, nil
	})
}

// SetQuota sets a tenant's quota in bytes (0 = none).
func (r *Registry) SetQuota(ctx context.Context, id string, quota int64) (*Tenant, error) {
	if quota < 0 {
		return nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "quota must not be negative")
	}
	return r.UpdateTenant(ctx, id, func(t *Tenant) error { t.Quota = quota; return nil })
}

// MaxRTO bounds a recovery time objective.
const MaxRTO = 365 * 24 * time.Hour

// SetRTO sets a tenant's recovery time objective (0 = none).
func (r *Registry) SetRTO(ctx context.Context, id string, rto time.Duration) (*Tenant, error) {
	if rto < 0 || rto > MaxRTO {
		return nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "a recovery time objective must be between 0 (none) and %v", MaxRTO)
	}
	return r.UpdateTenant(ctx, id, func(t *Tenant) error { t.RTO = rto; return nil })
}

// SetRetention changes a tenant's retention policy: fn gets the current
// policies (a zero value when there are none) and the time zone, and
// returns them changed; the result is validated, and policies that keep
// nothing anywhere are stored as none.
func (r *Registry) SetRetention(ctx context.Context, id string, fn func(ps *maint.Policies, tz *string) error) (*Tenant, error) {
	return r.UpdateTenant(ctx, id, func(t *Tenant) error {
		var ps maint.Policies
		if t.Retention != nil {
			ps = *t.Retention
			ps.PerGroup = maps.Clone(ps.PerGroup)
		}
		tz := t.TimeZone
		if err := fn(&ps, &tz); err != nil {
			return err
		}
		if _, err := time.LoadLocation(tz); err != nil {
			return vaultapi.Errorf(vaultapi.CodeBadRequest, "time zone %q: %v", clip(tz), err)
		}
		t.TimeZone = tz
		if ps.Default.Empty() && len(ps.PerGroup) == 0 {
			t.Retention = nil
			return nil
		}
		if err := ps.CheckSet(); err != nil {
			return vaultapi.Errorf(vaultapi.CodeBadRequest, "%v", err)
		}
		t.Retention = &ps
		return nil
	})
}

// Suspend suspends a tenant: its agents get 403 tenant_suspended, for reads
// too. Suspending a suspended tenant keeps the first date and updates the
// reason.
func (r *Registry) Suspend(ctx context.Context, id, reason string) (*Tenant, error) {
	if len(reason) > 200 {
		return nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "the reason is longer than 200 characters")
	}
	now := r.now()
	return r.UpdateTenant(ctx, id, func(t *Tenant) error {
		if !t.Suspended() {
			t.State, t.SuspendedAt = vaultapi.StateSuspended, now
		}
		t.Reason = reason
		return nil
	})
}

// Resume makes a suspended tenant active again.
func (r *Registry) Resume(ctx context.Context, id string) (*Tenant, error) {
	return r.UpdateTenant(ctx, id, func(t *Tenant) error {
		t.State, t.SuspendedAt, t.Reason = vaultapi.StateActive, time.Time{}, ""
		return nil
	})
}

func isCode(err error, code string) bool {
	var e *vaultapi.Error
	return errors.As(err, &e) && e.Code == code
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func sortCreds(cs []*Credential) {
	sort.Slice(cs, func(i, j int) bool {
		if !cs[i].Created.Equal(cs[j].Created) {
			return cs[i].Created.Before(cs[j].Created)
		}
		return cs[i].ID < cs[j].ID
	})
}
