package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// MaxKeySlots is how many key slots (keys/ objects) a tenant's repository
// may hold. Any agent credential can add slots and every agent reads them
// all on start-up, so the count is bounded; a tenant that reaches it asks
// the operator to remove old ones (cofferd tenant remove-key).
const MaxKeySlots = 64

// errTooManyKeySlots is the refusal of a key slot over MaxKeySlots.
var errTooManyKeySlots = errors.New("too many key slots")

// checkKeySlots refuses a new key slot when the tenant's repository holds
// MaxKeySlots already. Concurrent uploads may pass it together, so the
// bound can be exceeded by the tenant's upload slots at most.
func (s *Server) checkKeySlots(ctx context.Context, tenantID string) error {
	n := 0
	err := s.data.List(ctx, objectKey(tenantID, "keys/"), func(store.Info) error {
		if n++; n >= MaxKeySlots {
			return errTooManyKeySlots
		}
		return nil
	})
	if errors.Is(err, errTooManyKeySlots) {
		return Errorf(http.StatusForbidden, vaultapi.CodeTooManyKeySlots,
			"the repository holds %d key slots, the most a tenant may have; nothing was stored: ask your provider to remove unused ones (cofferd tenant remove-key)", MaxKeySlots)
	}
	if err != nil {
		return fmt.Errorf("counting key slots: %w", err)
	}
	return nil
}
