package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// EscrowName is the vault's escrow public key document. It holds only the
// recipient (public); the identity never enters the store.
const EscrowName = "vault/escrow.json"

// EscrowKey is vault/escrow.json. It is created once and never changed
// (rotation is a later wave).
type EscrowKey struct {
	Recipient   string    `json:"recipient"`
	Fingerprint string    `json:"fingerprint"`
	Created     time.Time `json:"created"`
}

// InitEscrow stores the vault's escrow recipient, create-only. When one
// exists it fails with a *vaultapi.Error "exists" naming its fingerprint.
func (r *Registry) InitEscrow(ctx context.Context, recipient string) (*EscrowKey, error) {
	if _, err := crypto.ParseEscrowRecipient(recipient); err != nil {
		return nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "%v", err)
	}
	if err := r.EnsureFormat(ctx); err != nil {
		return nil, err
	}
	k := &EscrowKey{Recipient: recipient, Fingerprint: crypto.EscrowFingerprint(recipient), Created: r.now()}
	err := create(ctx, r.sw, EscrowName, k)
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) {
		have, rerr := r.Escrow(ctx)
		if rerr != nil {
			return nil, rerr
		}
		return nil, vaultapi.Errorf(vaultapi.CodeExists,
			"an escrow key exists already (fingerprint %s, created %s); cofferd escrow show prints it", have.Fingerprint, have.Created.Format(time.RFC3339))
	}
	if err != nil {
		return nil, fmt.Errorf("storing %s: %w", EscrowName, err)
	}
	return k, nil
}

// Escrow loads the vault's escrow key; the error Is store.ErrNotFound when
// none was made.
func (r *Registry) Escrow(ctx context.Context) (*EscrowKey, error) {
	k, err := read[EscrowKey](ctx, r.sw, EscrowName, maxDoc)
	if err != nil {
		return nil, err
	}
	if _, perr := crypto.ParseEscrowRecipient(k.Recipient); perr != nil || k.Fingerprint != crypto.EscrowFingerprint(k.Recipient) {
		return nil, fmt.Errorf("vault state %s is corrupt: the recipient does not parse or does not match its fingerprint", EscrowName)
	}
	return k, nil
}

// EscrowRecipient returns the vault's escrow recipient and its
// fingerprint; the error Is store.ErrNotFound when there is none.
func (r *Registry) EscrowRecipient(ctx context.Context) (recipient, fingerprint string, err error) {
	k, err := r.Escrow(ctx)
	if err != nil {
		return "", "", err
	}
	return k.Recipient, k.Fingerprint, nil
}

// RecordEscrowChoice records what an enrolling agent (credential credID)
// chose. Choosing escrow makes the tenant "pending" until its slot is
// recorded; declining records "no" unless a slot is already recorded
// (another agent's escrow slot still opens the same repository, so it is
// never forgotten). The same agent enrolling again (a retry after it
// stopped, say at a mistyped passphrase) may take back its own "pending".
func (r *Registry) RecordEscrowChoice(ctx context.Context, tenantID, credID string, chosen bool) (*Tenant, error) {
	now := r.now()
	return r.UpdateTenant(ctx, tenantID, func(t *Tenant) error {
		e := t.Escrow
		switch {
		case e.Status == vaultapi.EscrowYes:
		case chosen && e.Status != vaultapi.EscrowPending:
			t.Escrow = vaultapi.Escrow{Status: vaultapi.EscrowPending, DecidedAt: now, DecidedBy: credID}
		case !chosen && (e.Status == "" || e.Status == vaultapi.EscrowPending && e.DecidedBy == credID && credID != ""):
			t.Escrow = vaultapi.Escrow{Status: vaultapi.EscrowNo, DecidedAt: now, DecidedBy: credID}
		}
		return nil
	})
}

// RecordEscrowSlot records that the tenant's repository holds an escrow
// slot sealed to the escrow key with the given fingerprint. The caller has
// checked the slot object; this only records it. It is idempotent; a new
// slot replaces an older one in the record (both stay in the repository).
func (r *Registry) RecordEscrowSlot(ctx context.Context, tenantID, slot, fingerprint string) (*Tenant, error) {
	if k, err := vaultapi.ParseRepoName(slot); err != nil || k != vaultapi.KindKey {
		return nil, vaultapi.Errorf(vaultapi.CodeBadName, "slot must be keys/<sha256>")
	}
	now := r.now()
	return r.UpdateTenant(ctx, tenantID, func(t *Tenant) error {
		if t.Escrow.Status == vaultapi.EscrowYes && t.Escrow.Slot == slot && t.Escrow.Fingerprint == fingerprint {
			return nil
		}
		decided := t.Escrow.DecidedAt
		if decided.IsZero() || t.Escrow.Status == vaultapi.EscrowNo {
			decided = now
		}
		t.Escrow = vaultapi.Escrow{Status: vaultapi.EscrowYes, DecidedAt: decided, DecidedBy: t.Escrow.DecidedBy,
			Slot: slot, Fingerprint: fingerprint, RecordedAt: now}
		return nil
	})
}

// ForgetEscrowSlot drops slot from the tenant's escrow record when it is
// the recorded one (an operator removed it: cofferd tenant remove-key
// --force). The tenant goes back to "pending": it chose escrow, and no
// slot is recorded.
func (r *Registry) ForgetEscrowSlot(ctx context.Context, tenantID, slot string) (*Tenant, error) {
	return r.UpdateTenant(ctx, tenantID, func(t *Tenant) error {
		if t.Escrow.Slot == slot {
			t.Escrow = vaultapi.Escrow{Status: vaultapi.EscrowPending, DecidedAt: t.Escrow.DecidedAt, DecidedBy: t.Escrow.DecidedBy}
		}
		return nil
	})
}
