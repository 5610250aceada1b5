package vault

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/store"
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

// Configure fills cfg's Auth, Enroller, Tenants, Ledger and Seeds from st,
// and its Escrow (which reads slots from cfg.Data: set Data first).
func (st *State) Configure(cfg *Config) {
	cfg.Auth, cfg.Enroller, cfg.Tenants, cfg.Ledger = st, st, st, st
	cfg.Seeds = st.Registry
	cfg.Escrow = &escrowState{reg: st.Registry, data: cfg.Data}
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
	// The tenant's escrow choice, where the MSP sees it (tenant show).
	if _, err := st.Registry.RecordEscrowChoice(ctx, t.ID, c.ID, req.Escrow); err != nil {
		return nil, err
	}
	_, _, eerr := st.Registry.EscrowRecipient(ctx)
	return &vaultapi.EnrollResponse{TenantID: t.ID, TenantName: t.Name, CredentialID: c.ID, EscrowAvailable: eerr == nil}, nil
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
	res, err := st.Ledger.Reserve(ctx, t, name, kind, size, ledger.Meta{LogicalBytes: meta.LogicalBytes, DataBytes: meta.DataBytes, Credential: p.CredentialID}, ttl)
	if errors.Is(err, ledger.ErrBusy) {
		return nil, fmt.Errorf("%w: %s", ErrBusy, name)
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// maxSlotSize bounds the key slot object POST /v1/escrow/slot reads.
const maxSlotSize = 64 << 10

// escrowState implements Escrow over the registry and the tenants' data.
type escrowState struct {
	reg  *registry.Registry
	data store.Store
}

// EscrowRecipient implements Escrow.
func (e *escrowState) EscrowRecipient(ctx context.Context) (string, string, error) {
	return e.reg.EscrowRecipient(ctx)
}

// RecordEscrowSlot implements Escrow: the slot must be in the tenant's
// repository, be content-named, and be an escrow-age slot sealed to this
// vault's recipient. (Whether it wraps the repository's master key only the
// offline identity can tell: cofferd escrow verify.)
func (e *escrowState) RecordEscrowSlot(ctx context.Context, tenantID, slot string) error {
	key, err := e.reg.Escrow(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return vaultapi.Errorf(vaultapi.CodeNoEscrow, "this vault offers no escrow key")
	}
	if err != nil {
		return err
	}
	if e.data == nil {
		return errors.New("escrow: no data store configured")
	}
	var raw []byte
	err = e.data.Get(ctx, objectKey(tenantID, slot), 0, -1, func(r io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(r, maxSlotSize+1))
		raw = b
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return vaultapi.Errorf(vaultapi.CodeNotFound, "key slot %s is not in your repository; store it before recording it", slot)
	}
	if err != nil {
		return err
	}
	if len(raw) > maxSlotSize {
		return vaultapi.Errorf(vaultapi.CodeBadRequest, "%s is over %d bytes: not a key slot", slot, maxSlotSize)
	}
	if sum := sha256.Sum256(raw); slot != "keys/"+hex.EncodeToString(sum[:]) {
		return vaultapi.Errorf(vaultapi.CodeBadRequest, "%s does not match its name", slot)
	}
	s, err := crypto.ParseSlot(raw, slot)
	if err != nil {
		return vaultapi.Errorf(vaultapi.CodeBadRequest, "%v", err)
	}
	if s.Type != crypto.SlotEscrowAge {
		return vaultapi.Errorf(vaultapi.CodeBadRequest, "key slot %s is a %s slot, not an escrow-age slot", slot, s.Type)
	}
	if s.Recipient != key.Recipient {
		return vaultapi.Errorf(vaultapi.CodeBadRequest, "key slot %s is sealed to escrow key %s, not to this vault's escrow key %s",
			slot, s.EscrowFingerprint(), key.Fingerprint)
	}
	_, err = e.reg.RecordEscrowSlot(ctx, tenantID, slot, key.Fingerprint)
	return err
}
