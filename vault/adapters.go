package vault

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// State adapts the store-backed registry and ledger to the server's
// interfaces: it is an Authenticator, Enroller, TenantSource and Ledger.
type State struct {
	Registry *registry.Registry
	Ledger   *ledger.Ledger
}

// Configure fills cfg's Auth, Enroller, Tenants and Ledger from st.
func (st *State) Configure(cfg *Config) {
	cfg.Auth, cfg.Enroller, cfg.Tenants, cfg.Ledger = st, st, st, st
}

// Authenticate implements Authenticator.
func (st *State) Authenticate(ctx context.Context, bearer vaultapi.Secret) (*Principal, error) {
	t, c, err := st.Registry.Authenticate(ctx, bearer.Reveal())
	if err != nil {
		return nil, err
	}
	return &Principal{TenantID: t.ID, TenantName: t.Name, CredentialID: c.ID, Record: t}, nil
}

// Enroll implements Enroller.
func (st *State) Enroll(ctx context.Context, req vaultapi.EnrollRequest) (*vaultapi.EnrollResponse, error) {
	t, c, err := st.Registry.Enroll(ctx, req)
	if err != nil {
		return nil, err
	}
	return &vaultapi.EnrollResponse{TenantID: t.ID, TenantName: t.Name, CredentialID: c.ID}, nil
}

// TenantInfo implements TenantSource.
func (st *State) TenantInfo(ctx context.Context, tenantID string) (*vaultapi.TenantInfo, error) {
	t, err := st.Registry.Tenant(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	return st.Ledger.TenantInfo(ctx, t)
}

// Reserve implements Ledger.
func (st *State) Reserve(ctx context.Context, p *Principal, name string, kind vaultapi.Kind, size int64, meta ObjectMeta, ttl time.Duration) (Reservation, error) {
	t, ok := p.Record.(*registry.Tenant)
	if !ok || t.ID != p.TenantID {
		var err error
		if t, err = st.Registry.Tenant(ctx, p.TenantID); err != nil {
			return nil, err
		}
	}
	res, err := st.Ledger.Reserve(ctx, t, name, kind, size, ledger.Meta{LogicalBytes: meta.LogicalBytes, DataBytes: meta.DataBytes}, ttl)
	if errors.Is(err, ledger.ErrBusy) {
		return nil, fmt.Errorf("%w: %s", ErrBusy, name)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}
