package vault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// KeySlot is what the vault can tell about one key slot of a tenant's
// repository without opening it: the slot's plaintext fields (FORMAT.md,
// "Key slots"), sanitised, since the tenant wrote them.
type KeySlot struct {
	ID      string    `json:"id"`   // the hex after keys/
	Name    string    `json:"name"` // keys/<hex>
	Size    int64     `json:"size"`
	Type    string    `json:"type"` // passphrase, escrow-age, or unreadable
	Created time.Time `json:"created,omitzero"`
	Host    string    `json:"host,omitempty"`
	Note    string    `json:"note,omitempty"`
	// EscrowFingerprint is the key an escrow-age slot is sealed to.
	EscrowFingerprint string `json:"escrow_fingerprint,omitempty"`
	// Escrow marks the escrow slot the vault recorded for the tenant.
	Escrow bool `json:"escrow_recorded,omitempty"`
	// Credential is the agent credential that uploaded the slot, when the
	// vault recorded it ("" when it does not know).
	Credential string `json:"credential,omitempty"`
	// Problem says why an unreadable slot does not parse.
	Problem string `json:"problem,omitempty"`
}

// SlotUnreadable is the Type of a slot object that does not parse.
const SlotUnreadable = "unreadable"

// maxShown bounds the host, note and problem text shown for a slot.
const maxShown = 80

// KeySlots lists the key slots of t's repository, oldest first. uploads
// maps slot names to the credential that stored them (may be nil).
func KeySlots(ctx context.Context, data store.Store, t *registry.Tenant, uploads map[string]string) ([]KeySlot, error) {
	prefix := ledger.ObjectKey(t.ID, "keys/")
	var names []store.Info
	err := data.List(ctx, prefix, func(i store.Info) error {
		names = append(names, i)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the key slots of tenant %s: %w", t.Name, err)
	}
	out := make([]KeySlot, 0, len(names))
	for _, i := range names {
		id := strings.TrimPrefix(i.Name, prefix)
		if k, err := vaultapi.ParseRepoName("keys/" + id); err != nil || k != vaultapi.KindKey {
			continue // not an object the API could have stored
		}
		ks, err := readSlot(ctx, data, t, id, i.Size)
		if errors.Is(err, store.ErrNotFound) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, err
		}
		ks.Credential = uploads[ks.Name]
		out = append(out, ks)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// readSlot reads and describes one slot object.
func readSlot(ctx context.Context, data store.Store, t *registry.Tenant, id string, size int64) (KeySlot, error) {
	ks := KeySlot{ID: id, Name: "keys/" + id, Size: size, Type: SlotUnreadable}
	var raw []byte
	err := data.Get(ctx, ledger.ObjectKey(t.ID, ks.Name), 0, -1, func(r io.Reader) error {
		b, err := io.ReadAll(io.LimitReader(r, maxSlotSize+1))
		raw = b
		return err
	})
	if err != nil {
		return ks, fmt.Errorf("reading key slot %s of tenant %s: %w", id, t.Name, err)
	}
	if len(raw) > maxSlotSize {
		ks.Problem = fmt.Sprintf("over %d bytes: not a key slot", maxSlotSize)
		return ks, nil
	}
	s, err := crypto.ParseSlot(raw, id)
	if err != nil {
		msg := strings.TrimLeft(strings.TrimPrefix(err.Error(), "key slot "+id), ": ")
		ks.Problem = termtext.Clip(msg, maxShown)
		return ks, nil
	}
	ks.Type, ks.Created = s.Type, s.Created.UTC()
	ks.Host, ks.Note = termtext.Clip(s.Host, maxShown), termtext.Clip(s.Note, maxShown)
	if s.Type == crypto.SlotEscrowAge {
		ks.EscrowFingerprint = s.EscrowFingerprint()
	}
	ks.Escrow = t.Escrow.Slot == ks.Name
	return ks, nil
}

// FindKeySlot picks the slot keyID names: its full hex, "keys/<hex>", or a
// unique prefix of at least 8 hex digits. Errors say what matched.
func FindKeySlot(slots []KeySlot, tenant, keyID string) (*KeySlot, error) {
	id := strings.ToLower(strings.TrimPrefix(keyID, "keys/"))
	if len(id) < 8 || len(id) > 64 || strings.Trim(id, "0123456789abcdef") != "" {
		return nil, vaultapi.Errorf(vaultapi.CodeBadRequest,
			"key id %q: give the slot's hex name or a prefix of at least 8 hex digits (cofferd tenant keys %s lists them)", termtext.Clip(keyID, maxShown), tenant)
	}
	var found []*KeySlot
	for i := range slots {
		if strings.HasPrefix(slots[i].ID, id) {
			found = append(found, &slots[i])
		}
	}
	switch len(found) {
	case 0:
		return nil, vaultapi.Errorf(vaultapi.CodeNotFound, "tenant %s has no key slot %s (cofferd tenant keys %s lists them)", tenant, id, tenant)
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, f := range found {
		ids[i] = f.ID
	}
	return nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "key id %s matches %d slots of tenant %s (%s); give more digits",
		id, len(found), tenant, strings.Join(ids, ", "))
}

// ErrKeyProtected is wrapped by the refusals of CheckRemovable.
var ErrKeyProtected = errors.New("key slot protected")

// CheckRemovable refuses to remove the last readable passphrase slot (no
// passphrase would open the repository any more) and the escrow slot the
// vault recorded (the provider's way back in); force overrides both.
func CheckRemovable(slots []KeySlot, s *KeySlot, tenant string, force bool) error {
	if force {
		return nil
	}
	if s.Escrow {
		return fmt.Errorf("%w: key slot %s is tenant %s's recorded escrow slot: without it the provider cannot restore when every passphrase is lost; pass --force to remove it anyway",
			ErrKeyProtected, s.ID, tenant)
	}
	if s.Type != crypto.SlotPassphrase {
		return nil
	}
	for _, o := range slots {
		if o.Type == crypto.SlotPassphrase && o.ID != s.ID {
			return nil
		}
	}
	return fmt.Errorf("%w: key slot %s is tenant %s's last passphrase slot: without it no passphrase opens the repository; add one first (coffer key passwd adds a slot), or pass --force",
		ErrKeyProtected, s.ID, tenant)
}

// RemoveKeySlot deletes slot s of t's repository (check it with
// CheckRemovable first). A recorded escrow slot is forgotten in the
// registry first, so the record never names a missing slot.
func RemoveKeySlot(ctx context.Context, data store.Store, reg *registry.Registry, t *registry.Tenant, s *KeySlot) error {
	if s.Escrow {
		if _, err := reg.ForgetEscrowSlot(ctx, t.ID, s.Name); err != nil {
			return err
		}
	}
	err := data.Delete(ctx, ledger.ObjectKey(t.ID, s.Name))
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("removing key slot %s of tenant %s: %w", s.ID, t.Name, err)
	}
	return nil
}
