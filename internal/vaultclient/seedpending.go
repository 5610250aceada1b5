package vaultclient

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// ErrSeedPending is wrapped by errors of reads the vault refuses because
// the object travels on a seed it has not imported yet (CodeSeedPending).
// The error also carries the vault's message, which names the seed.
var ErrSeedPending = errors.New("waiting on a seed the vault has not imported yet")

// seedPending maps the vault's 409 seed_pending (a pack that travels on a
// seed the vault has not imported yet) to a permanent error carrying the
// vault's message, which names the seed: not store.ErrExists, as other
// conflicts are, and never retried. A HEAD reply has no body, so a 409 to
// a HEAD, which the vault answers only for such a pack, is read the same
// way. Both wrap ErrSeedPending. It returns nil for any other reply.
func seedPending(ve *Error, method string) error {
	switch {
	case ve.Code == vaultapi.CodeSeedPending:
		return &store.PermanentError{Err: fmt.Errorf("%w: %w", ErrSeedPending, ve)}
	case ve.Status == http.StatusConflict && ve.Code == "" && method == http.MethodHead:
		return &store.PermanentError{Err: fmt.Errorf("the object travels on a seed the vault has not imported yet; restores that need it wait for the provider's seed import (coffer seed status names it): %w: %w", ErrSeedPending, ve)}
	}
	return nil
}
