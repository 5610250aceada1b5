package registry_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/registry"
)

func TestEscrowKeyCreateOnce(t *testing.T) {
	a, b, _, _ := twoRegistries(t)
	ctx := context.Background()
	if _, _, err := a.EscrowRecipient(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("no escrow key yet: %v", err)
	}
	k, err := crypto.GenerateEscrowKey(true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.InitEscrow(ctx, "age1bogus"); code(err) != vaultapi.CodeBadRequest {
		t.Fatalf("bad recipient: %v", err)
	}
	if _, err := a.InitEscrow(ctx, k.Identity()); code(err) != vaultapi.CodeBadRequest || strings.Contains(err.Error(), k.Identity()) {
		t.Fatalf("identity as recipient: %v", err)
	}
	got, err := a.InitEscrow(ctx, k.Recipient)
	if err != nil || got.Fingerprint != crypto.EscrowFingerprint(k.Recipient) {
		t.Fatalf("%+v %v", got, err)
	}
	rcpt, fp, err := b.EscrowRecipient(ctx)
	if err != nil || rcpt != k.Recipient || fp != got.Fingerprint {
		t.Fatalf("EscrowRecipient = %q %q %v", rcpt, fp, err)
	}
	// A second init, on either replica, fails and names the existing key.
	k2, err := crypto.GenerateEscrowKey(true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.InitEscrow(ctx, k2.Recipient)
	if code(err) != vaultapi.CodeExists || !strings.Contains(err.Error(), fp) {
		t.Fatalf("second init: %v", err)
	}
	if rcpt, _, _ := a.EscrowRecipient(ctx); rcpt != k.Recipient {
		t.Fatal("second init replaced the key")
	}
}

func TestEscrowKeyRace(t *testing.T) {
	a, b, _, _ := twoRegistries(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := crypto.GenerateEscrowKey(true)
			if err != nil {
				t.Error(err)
				return
			}
			r := a
			if i%2 == 1 {
				r = b
			}
			if _, err := r.InitEscrow(context.Background(), k.Recipient); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if code(err) != vaultapi.CodeExists {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d inits won", wins)
	}
}

func TestEscrowTenantRecord(t *testing.T) {
	a, b, clock, _ := twoRegistries(t)
	ctx := context.Background()
	ten, _, _, err := a.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if ten.Escrow.Status != "" {
		t.Fatalf("new tenant escrow %+v", ten.Escrow)
	}
	got, err := a.RecordEscrowChoice(ctx, ten.ID, "", false)
	if err != nil || got.Escrow.Status != vaultapi.EscrowNo || got.Escrow.DecidedAt.IsZero() {
		t.Fatalf("%+v %v", got, err)
	}
	// Deciding "no" again writes nothing.
	rev := got.Rev
	if got, err = b.RecordEscrowChoice(ctx, ten.ID, "", false); err != nil || got.Rev != rev {
		t.Fatalf("%+v %v", got, err)
	}
	if got, err = b.RecordEscrowChoice(ctx, ten.ID, "", true); err != nil || got.Escrow.Status != vaultapi.EscrowPending {
		t.Fatalf("%+v %v", got, err)
	}
	clock.Advance(time.Minute)
	slot := "keys/" + strings.Repeat("ab", 32)
	if _, err := a.RecordEscrowSlot(ctx, ten.ID, "keys/../x", "0123456789abcdef"); code(err) != vaultapi.CodeBadName {
		t.Fatalf("bad slot name: %v", err)
	}
	if _, err := a.RecordEscrowSlot(ctx, ten.ID, "data/ab/"+strings.Repeat("ab", 32), "0123456789abcdef"); code(err) != vaultapi.CodeBadName {
		t.Fatalf("pack as slot: %v", err)
	}
	got, err = a.RecordEscrowSlot(ctx, ten.ID, slot, "0123456789abcdef")
	if err != nil || got.Escrow.Status != vaultapi.EscrowYes || got.Escrow.Slot != slot || got.Escrow.Fingerprint != "0123456789abcdef" ||
		!got.Escrow.RecordedAt.After(got.Escrow.DecidedAt) {
		t.Fatalf("%+v %v", got.Escrow, err)
	}
	rev = got.Rev
	if got, err = b.RecordEscrowSlot(ctx, ten.ID, slot, "0123456789abcdef"); err != nil || got.Rev != rev {
		t.Fatalf("idempotent record wrote: %+v %v", got, err)
	}
	// A later agent enrolling without escrow does not forget the slot.
	if got, err = b.RecordEscrowChoice(ctx, ten.ID, "", false); err != nil || got.Escrow.Status != vaultapi.EscrowYes || got.Rev != rev {
		t.Fatalf("%+v %v", got, err)
	}
	// The record shows in List and survives other changes.
	if _, err := a.SetQuota(ctx, ten.ID, 1<<30); err != nil {
		t.Fatal(err)
	}
	list, err := b.List(ctx)
	if err != nil || len(list) != 1 || list[0].Escrow.Slot != slot {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if _, err := a.RecordEscrowSlot(ctx, strings.Repeat("0", 24), slot, "x"); code(err) != vaultapi.CodeNotFound {
		t.Fatalf("unknown tenant: %v", err)
	}
	_ = registry.EscrowName
}

// An agent that enrolled with escrow and stopped (a mistyped passphrase)
// may enroll again without it: its own "pending" becomes "no". Another
// agent's choice it cannot take back.
func TestEscrowChoiceRetry(t *testing.T) {
	a, _, _, _ := twoRegistries(t)
	ctx := context.Background()
	ten, _, _, err := a.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	const x, y = "00000000000000000000000a", "00000000000000000000000b"
	if got, err := a.RecordEscrowChoice(ctx, ten.ID, x, true); err != nil || got.Escrow.Status != vaultapi.EscrowPending || got.Escrow.DecidedBy != x {
		t.Fatalf("%+v %v", got, err)
	}
	if got, err := a.RecordEscrowChoice(ctx, ten.ID, x, false); err != nil || got.Escrow.Status != vaultapi.EscrowNo {
		t.Fatalf("the same agent's retry without escrow: %+v %v", got, err)
	}
	if got, err := a.RecordEscrowChoice(ctx, ten.ID, y, true); err != nil || got.Escrow.Status != vaultapi.EscrowPending || got.Escrow.DecidedBy != y {
		t.Fatalf("%+v %v", got, err)
	}
	if got, err := a.RecordEscrowChoice(ctx, ten.ID, x, false); err != nil || got.Escrow.Status != vaultapi.EscrowPending {
		t.Fatalf("another agent took back y's choice: %+v %v", got, err)
	}
}
