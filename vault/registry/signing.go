package registry

import (
	"context"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// SetSigningKey records the tenant's public seed signing key. The first key
// stays: the same key again changes nothing, another one is refused
// (CodeSigningKeyMismatch), so a stolen agent credential cannot swap the
// key that vouches for the tenant's seeds.
func (r *Registry) SetSigningKey(ctx context.Context, id, public string) (*Tenant, error) {
	if _, err := crypto.ParsePublicKey(public); err != nil {
		return nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "%v", err)
	}
	return r.UpdateTenant(ctx, id, func(t *Tenant) error {
		switch t.SigningKey {
		case "", public:
			t.SigningKey = public
			return nil
		}
		return vaultapi.Errorf(vaultapi.CodeSigningKeyMismatch,
			"tenant %q has signing key %s already, not %s: this agent's repository is not the one the tenant's seeds are signed for",
			t.Name, crypto.SigningKeyFingerprint(t.SigningKey), crypto.SigningKeyFingerprint(public))
	})
}
