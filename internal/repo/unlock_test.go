package repo

import (
	"errors"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/crypto"
)

// The provider's escrow identity opens a repository whose tenant chose
// escrow; a wrong identity is told apart from a repository without escrow,
// and both differ from a wrong passphrase.
func TestOpenWithEscrowIdentity(t *testing.T) {
	r, st, _ := initRepo(t)
	key, err := crypto.GenerateEscrowKey(true)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := crypto.ParseEscrowIdentities(strings.NewReader(key.Identity() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	// No escrow slot yet.
	if _, err := OpenWithUnlocker(ctx, st, EscrowIdentity{Identities: ids}); !errors.Is(err, ErrNoEscrowSlot) {
		t.Fatalf("escrow identity on a repository without escrow: %v; want ErrNoEscrowSlot", err)
	}
	slot, err := r.AddEscrowSlot(ctx, key.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []EscrowIdentity{{Identities: ids}, {Identities: ids, Slot: slot}} {
		got, err := OpenWithUnlocker(ctx, st, u)
		if err != nil {
			t.Fatalf("escrow identity (slot %q): %v", u.Slot, err)
		}
		if got.Config().ID != r.Config().ID || got.OpenedSlot() != slot {
			t.Fatalf("opened repository %s through slot %s; want %s through %s", got.Config().ID, got.OpenedSlot(), r.Config().ID, slot)
		}
	}
	other, _ := crypto.GenerateEscrowKey(true)
	wrong, _ := crypto.ParseEscrowIdentities(strings.NewReader(other.Identity() + "\n"))
	if _, err := OpenWithUnlocker(ctx, st, EscrowIdentity{Identities: wrong}); !errors.Is(err, crypto.ErrEscrowIdentity) {
		t.Fatalf("a wrong escrow identity: %v; want ErrEscrowIdentity", err)
	}
	if _, err := OpenWithUnlocker(ctx, st, EscrowIdentity{Identities: ids, Slot: KeysPrefix + strings.Repeat("0", 64)}); !errors.Is(err, ErrNoEscrowSlot) {
		t.Fatalf("a slot name that is not an escrow slot: %v; want ErrNoEscrowSlot", err)
	}
	// The passphrase unlocker still works through the same seam, and a
	// wrong passphrase is a wrong passphrase.
	if _, err := OpenWithUnlocker(ctx, st, OpenOptions{Passphrase: []byte(pass)}); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenWithUnlocker(ctx, st, OpenOptions{Passphrase: []byte("not it")}); !errors.Is(err, crypto.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
}
