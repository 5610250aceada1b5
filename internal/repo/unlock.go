package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"filippo.io/age"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/store"
)

// Unlocker opens a repository's master key from its key slots, as an age
// Identity unwraps a file key. It is given the slots and ours, which reports
// whether a key authenticates this repository's config, and returns the
// key and the name of the slot that held it. When no slot opens, its error
// says why, wrapping crypto.ErrWrongPassphrase or crypto.ErrEscrowIdentity
// (a wrong secret) or ErrNoEscrowSlot.
type Unlocker interface {
	Unlock(slots []SlotInfo, ours func(*crypto.MasterKey) bool) (*crypto.MasterKey, string, error)
}

// ErrNoEscrowSlot is returned (wrapped) when an escrow identity is given
// for a repository that has no escrow slot: its tenant did not choose
// escrow, so only the tenant's passphrase opens it.
var ErrNoEscrowSlot = errors.New("the repository has no escrow key slot")

// OpenWithUnlocker opens a repository with any Unlocker: a passphrase
// (OpenOptions) or the provider's escrow identity (EscrowIdentity).
func OpenWithUnlocker(ctx context.Context, st store.Store, u Unlocker) (*Repo, error) {
	cfg, body, mac, err := ReadConfig(ctx, st)
	if err != nil {
		return nil, err
	}
	return openUnlocked(ctx, st, cfg, body, mac, u)
}

// openUnlocked lists the slots and opens the repository with the key u
// finds in them.
func openUnlocked(ctx context.Context, st store.Store, cfg Config, body, mac []byte, u Unlocker) (*Repo, error) {
	slots, err := ListSlots(ctx, st)
	if err != nil {
		return nil, err
	}
	if len(slots) == 0 {
		return nil, fmt.Errorf("%s has no key slots: the repository cannot be opened", st.Location())
	}
	mk, slot, err := u.Unlock(slots, func(mk *crypto.MasterKey) bool { return authenticates(mk, body, mac) })
	if err != nil {
		return nil, err
	}
	r, err := newRepo(st, cfg, mk)
	if err != nil {
		return nil, err
	}
	r.slot = slot
	return r, nil
}

// EscrowIdentity unlocks a repository's escrow slot with the provider's
// offline age identity (cofferd escrow init wrote it).
type EscrowIdentity struct {
	Identities []age.Identity
	// Slot, when set, is the only slot tried (the one the vault recorded).
	Slot string
}

// Unlock tries the identities on the escrow slots.
func (e EscrowIdentity) Unlock(slots []SlotInfo, ours func(*crypto.MasterKey) bool) (*crypto.MasterKey, string, error) {
	var tried, foreign []string
	var last error
	for _, s := range slots {
		if s.Err != nil || s.Slot.Type != crypto.SlotEscrowAge || (e.Slot != "" && s.Name != e.Slot) {
			continue
		}
		tried = append(tried, s.Name)
		mk, err := s.Slot.OpenWithIdentity(e.Identities...)
		if err != nil {
			last = err
			continue
		}
		if !ours(mk) {
			foreign = append(foreign, s.Name)
			continue
		}
		return mk, s.Name, nil
	}
	switch {
	case len(tried) == 0 && e.Slot != "":
		return nil, "", fmt.Errorf("%w: slot %s is not an escrow slot of this repository", ErrNoEscrowSlot, e.Slot)
	case len(tried) == 0:
		return nil, "", fmt.Errorf("%w: its tenant did not choose escrow, so only the tenant's passphrase opens it (run the restore with coffer, on the tenant's side)", ErrNoEscrowSlot)
	case len(foreign) > 0:
		return nil, "", fmt.Errorf("escrow slot %s opens, but its key does not authenticate the repository's config: it belongs to another repository, or the config was changed", strings.Join(foreign, ", "))
	}
	return nil, "", fmt.Errorf("escrow slot %s: %w", strings.Join(tried, ", "), last)
}
