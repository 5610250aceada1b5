package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
)

// ProbePrefix is where ProbeConditional writes its short-lived object.
const ProbePrefix = "vault/probe/"

// ErrNoConditionalWrites means the store accepted a conditional write it
// should have refused: replicas sharing it would silently lose updates.
var ErrNoConditionalWrites = errors.New("the store ignores conditional writes")

// ProbeConditional checks that s really honours conditional writes, as the
// vault's registry and usage ledger need when several replicas share the
// store. It creates ProbePrefix+<random> with a create-only Swap, checks that
// a second create-only Swap and a Swap with a wrong version both fail with
// ErrConflict and leave the object unchanged, then deletes the object.
//
// A store without Swapper support, or one that lets a wrong-version Swap
// through (some S3-compatible stores ignore If-Match and If-None-Match),
// fails with an error wrapping ErrNoConditionalWrites. Other failures
// (network, permissions) are returned as they are, with the probe's step.
func ProbeConditional(ctx context.Context, s Store) (err error) {
	sw, ok := As[Swapper](s)
	if !ok {
		return fmt.Errorf("%w: %s has no compare-and-swap support", ErrNoConditionalWrites, s.Location())
	}
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	name := ProbePrefix + hex.EncodeToString(rnd[:])
	first := []byte("coffer conditional-write probe\n")
	v1, err := sw.Swap(ctx, name, first, "")
	if err != nil {
		return fmt.Errorf("conditional-write probe: creating %s on %s: %w", name, s.Location(), err)
	}
	defer func() {
		if derr := s.Delete(context.WithoutCancel(ctx), name); derr != nil && err == nil {
			err = fmt.Errorf("conditional-write probe: deleting %s on %s: %w", name, s.Location(), derr)
		}
	}()
	ignored := func(what string) error {
		return fmt.Errorf("%w: on %s %s succeeded; replicas sharing this store would lose registry and usage updates "+
			"(use a store that supports If-Match and If-None-Match, such as AWS S3 or a recent MinIO)",
			ErrNoConditionalWrites, s.Location(), what)
	}
	// Create-only on a name that exists.
	if _, err := sw.Swap(ctx, name, []byte("second create\n"), ""); err == nil {
		return ignored("a create-only write over an existing object")
	} else if !errors.Is(err, ErrConflict) {
		return fmt.Errorf("conditional-write probe: create-only write over %s: want a conflict, got: %w", name, err)
	}
	// A version that was never issued.
	wrong := "coffer-probe-wrong-version"
	if wrong == v1 {
		wrong += "-2"
	}
	if _, err := sw.Swap(ctx, name, []byte("wrong version\n"), wrong); err == nil {
		return ignored("a write with a wrong version")
	} else if !errors.Is(err, ErrConflict) {
		return fmt.Errorf("conditional-write probe: write with a wrong version to %s: want a conflict, got: %w", name, err)
	}
	b, v, err := sw.ReadVersioned(ctx, name, 1<<10)
	if err != nil {
		return fmt.Errorf("conditional-write probe: reading %s back: %w", name, err)
	}
	if string(b) != string(first) || v != v1 {
		return ignored("a refused write that still changed the object")
	}
	return nil
}
