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

// Enroll turns an enrollment token into a credential that the agent drew
// itself (only its id and hash arrive). It is idempotent: the same token
// with the same credential succeeds again, so a lost reply can be retried.
// Errors: 401 invalid_credential (unknown or malformed token), 401
// token_expired, 409 token_used (used by another credential), 409
// credential_id_taken, 403 tenant_suspended, 400 bad_request.
func (r *Registry) Enroll(ctx context.Context, req vaultapi.EnrollRequest) (*Tenant, *Credential, error) {
	if !vaultapi.ValidID(req.CredentialID) || !vaultapi.ValidSHA256Hex(req.CredentialSHA256) {
		return nil, nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "credential_id must be 24 lower-case hex digits and credential_sha256 64")
	}
	if len(req.Host) > 255 || strings.ContainsFunc(req.Host, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		return nil, nil, vaultapi.Errorf(vaultapi.CodeBadRequest, "host must be at most 255 printable characters")
	}
	invalid := vaultapi.Errorf(vaultapi.CodeInvalidCredential, "invalid enrollment token")
	tokID, secret, err := vaultapi.ParseToken(req.Token.Reveal())
	if err != nil {
		return nil, nil, invalid
	}
	now := r.now()
	var tenant *Tenant
	_, err = Update(ctx, r.sw, tokenKey(tokID), maxDoc, func(cur *token, exists bool) (*token, error) {
		if !exists {
			hashMatches("", secret)
			return nil, invalid
		}
		if !hashMatches(cur.SecretSHA256, secret) {
			return nil, invalid
		}
		t, err := r.Tenant(ctx, cur.Tenant)
		if err != nil {
			return nil, err
		}
		tenant = t
		if cur.Used != nil {
			if cur.Used.CredentialSHA256 == req.CredentialSHA256 && cur.Used.CredentialID == req.CredentialID {
				return cur, nil // a retry of an enrollment that went through
			}
			return nil, vaultapi.Errorf(vaultapi.CodeTokenUsed,
				"this enrollment token was already used on %s by another agent; ask your provider for a new one: cofferd tenant token %s",
				cur.Used.At.Format(time.RFC3339), t.Name)
		}
		if !now.Before(cur.Expires) {
			return nil, vaultapi.Errorf(vaultapi.CodeTokenExpired,
				"enrollment token expired on %s; ask your provider for a new one: cofferd tenant token %s",
				cur.Expires.Format(time.RFC3339), t.Name)
		}
		if t.Suspended() {
			return nil, suspendedError(t)
		}
		next := *cur
		next.Used = &tokenUse{At: now, CredentialID: req.CredentialID, CredentialSHA256: req.CredentialSHA256}
		return &next, nil
	})
	if err != nil {
		return nil, nil, err
	}
	cred := &Credential{ID: req.CredentialID, Tenant: tenant.ID, SecretSHA256: req.CredentialSHA256,
		Host: req.Host, Token: tokID, Created: now}
	err = create(ctx, r.sw, credKey(cred.ID), cred)
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) {
		have, rerr := read[Credential](ctx, r.sw, credKey(cred.ID), maxDoc)
		if rerr != nil {
			return nil, nil, rerr
		}
		if have.Tenant != tenant.ID || subtle.ConstantTimeCompare([]byte(have.SecretSHA256), []byte(req.CredentialSHA256)) != 1 {
			return nil, nil, vaultapi.Errorf(vaultapi.CodeCredentialIDTaken, "credential id %s is taken; draw a new credential and enroll again", cred.ID)
		}
		return tenant, have, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("storing credential %s: %w", cred.ID, err)
	}
	return tenant, cred, nil
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
