package registry

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// token is vault/tokens/<id>.json: a single-use enrollment token.
type token struct {
	Revision
	ID           string    `json:"id"`
	Tenant       string    `json:"tenant"`
	SecretSHA256 string    `json:"secret_sha256"`
	Created      time.Time `json:"created"`
	Expires      time.Time `json:"expires"`
	Used         *tokenUse `json:"used,omitempty"`
}

type tokenUse struct {
	At               time.Time `json:"at"`
	CredentialID     string    `json:"credential_id"`
	CredentialSHA256 string    `json:"credential_sha256"`
}

// Credential is vault/creds/<id>.json: an agent's credential, by the
// SHA-256 of its secret.
type Credential struct {
	Revision
	ID           string    `json:"id"`
	Tenant       string    `json:"tenant"`
	SecretSHA256 string    `json:"secret_sha256"`
	Host         string    `json:"host,omitempty"`
	Token        string    `json:"token"` // id of the enrollment token
	Created      time.Time `json:"created"`
	Revoked      time.Time `json:"revoked,omitzero"`
}

// IsRevoked reports whether the credential was revoked.
func (c *Credential) IsRevoked() bool { return !c.Revoked.IsZero() }

func tokenKey(id string) string { return tokensPrefix + id + ".json" }
func credKey(id string) string  { return credsPrefix + id + ".json" }

// dummyHash is compared against when an id is unknown, so that an unknown
// id and a wrong secret take the same path and give the same answer.
var dummyHash = make([]byte, 32)

// hashMatches compares a stored hex digest with the digest of secret in
// constant time. A stored digest that does not decode compares against the
// dummy (and fails).
func hashMatches(storedHex string, secret []byte) bool {
	want, err := hex.DecodeString(storedHex)
	ok := err == nil && len(want) == 32
	if !ok {
		want = dummyHash
	}
	got := vaultapi.SecretSHA256(secret)
	return subtle.ConstantTimeCompare(want, got[:]) == 1 && ok
}

// NewToken issues a new single-use enrollment token for a tenant, valid for
// ttl (0 means DefaultTokenTTL). It returns the token (shown once) and its
// expiry.
func (r *Registry) NewToken(ctx context.Context, tenantID string, ttl time.Duration) (vaultapi.Secret, time.Time, error) {
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < 0 {
		return "", time.Time{}, vaultapi.Errorf(vaultapi.CodeBadRequest, "token lifetime must be positive")
	}
	if _, err := r.Tenant(ctx, tenantID); err != nil {
		return "", time.Time{}, err
	}
	tok, id, sha, err := vaultapi.NewToken()
	if err != nil {
		return "", time.Time{}, err
	}
	now := r.now()
	doc := &token{ID: id, Tenant: tenantID, SecretSHA256: hex.EncodeToString(sha[:]), Created: now, Expires: now.Add(ttl)}
	if err := create(ctx, r.sw, tokenKey(id), doc); err != nil {
		return "", time.Time{}, fmt.Errorf("storing the enrollment token: %w", err)
	}
	return tok, doc.Expires, nil
}

// Authenticate checks an agent credential (cfa1_…, without "Bearer ") and
// returns its tenant. It does not cache. Errors: 401 invalid_credential
// (malformed, unknown id, or wrong secret: one message for all), 401
// credential_revoked, 403 tenant_suspended.
func (r *Registry) Authenticate(ctx context.Context, bearer string) (*Tenant, *Credential, error) {
	invalid := vaultapi.Errorf(vaultapi.CodeInvalidCredential, "invalid credential")
	id, secret, err := vaultapi.ParseCredential(bearer)
	if err != nil {
		return nil, nil, invalid
	}
	c, err := read[Credential](ctx, r.sw, credKey(id), maxDoc)
	if errors.Is(err, store.ErrNotFound) {
		hashMatches("", secret)
		return nil, nil, invalid
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading credential: %w", err)
	}
	if !hashMatches(c.SecretSHA256, secret) {
		return nil, nil, invalid
	}
	if c.IsRevoked() {
		return nil, nil, vaultapi.Errorf(vaultapi.CodeCredentialRevoked,
			"credential %s was revoked on %s; enroll again: coffer init --repo URL --token NEW", c.ID, c.Revoked.Format(time.RFC3339))
	}
	t, err := r.Tenant(ctx, c.Tenant)
	if isCode(err, vaultapi.CodeNotFound) {
		return nil, nil, invalid
	}
	if err != nil {
		return nil, nil, err
	}
	if t.Suspended() {
		return nil, nil, suspendedError(t)
	}
	return t, c, nil
}

func suspendedError(t *Tenant) error {
	msg := fmt.Sprintf("tenant %s is suspended by your provider since %s", t.Name, t.SuspendedAt.Format(time.RFC3339))
	if t.Reason != "" {
		msg += ": " + t.Reason
	}
	return &vaultapi.Error{Status: vaultapi.StatusOf(vaultapi.CodeTenantSuspended), Code: vaultapi.CodeTenantSuspended, Message: msg}
}

// Revoke revokes a tenant's credential. Revoking twice is not an error.
func (r *Registry) Revoke(ctx context.Context, tenantID, credID string) error {
	notFound := vaultapi.Errorf(vaultapi.CodeNotFound, "tenant has no credential %q", clip(credID))
	if !vaultapi.ValidID(credID) {
		return notFound
	}
	now := r.now()
	_, err := Update(ctx, r.sw, credKey(credID), maxDoc, func(cur *Credential, exists bool) (*Credential, error) {
		if !exists || cur.Tenant != tenantID {
			return nil, notFound
		}
		if cur.IsRevoked() {
			return cur, nil
		}
		next := *cur
		next.Revoked = now
		return &next, nil
	})
	return err
}

// Credentials lists a tenant's credentials, revoked ones included, oldest
// first.
func (r *Registry) Credentials(ctx context.Context, tenantID string) ([]*Credential, error) {
	var ids []string
	err := r.meta.List(ctx, credsPrefix, func(i store.Info) error {
		if id, ok := strings.CutSuffix(strings.TrimPrefix(i.Name, credsPrefix), ".json"); ok && vaultapi.ValidID(id) {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing credentials: %w", err)
	}
	var out []*Credential
	for _, id := range ids {
		c, err := read[Credential](ctx, r.sw, credKey(id), maxDoc)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if c.Tenant == tenantID {
			out = append(out, c)
		}
	}
	sortCreds(out)
	return out, nil
}
