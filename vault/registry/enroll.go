package registry

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// Enroll turns an enrollment token into a credential that the agent drew
// itself (only its id and hash arrive).
//
// It is idempotent for one credential: the same credential (id and hash)
// enrolled again succeeds, with the token it used or with any valid token
// of its tenant, which then stays unused. A refused enrollment never uses
// up the token: the credential is checked before the token is claimed, and
// a claim whose credential then cannot be stored is given back.
//
// Errors: 401 invalid_credential (unknown or malformed token), 401
// token_expired, 409 token_used (used by another credential), 409
// credential_id_taken (the id belongs to another credential, or to this
// credential after it was revoked: draw a new one), 403 tenant_suspended,
// 400 bad_request.
func (r *Registry) Enroll(ctx context.Context, req vaultapi.EnrollRequest) (*Tenant, *Credential, error) {
	if err := checkEnrollRequest(req); err != nil {
		return nil, nil, err
	}
	tokID, secret, err := vaultapi.ParseToken(req.Token.Reveal())
	if err != nil {
		return nil, nil, errInvalidToken()
	}
	tok, tenant, err := r.checkToken(ctx, tokID, secret)
	if err != nil {
		return nil, nil, err
	}
	spent := usedBy(tok.Used, req) // by an earlier attempt of this request
	have, err := r.enrolledCredential(ctx, tenant, req, spent)
	if err != nil {
		if spent && isCode(err, vaultapi.CodeCredentialIDTaken) && !owns(have, tenant, req) {
			r.releaseToken(ctx, tokID, req) // that attempt stored no credential
		}
		return nil, nil, err
	}
	if have != nil {
		return tenant, have, nil
	}
	if !spent {
		if err := r.claimToken(ctx, tokID, secret, req); err != nil {
			return nil, nil, err
		}
	}
	cred, err := r.storeCredential(ctx, tenant, tokID, req)
	if isCode(err, vaultapi.CodeCredentialIDTaken) {
		// Refused: the token goes back. (After a store error it stays
		// claimed by this credential, whose retry then goes through.)
		r.releaseToken(ctx, tokID, req)
	}
	if err != nil {
		return nil, nil, err
	}
	return tenant, cred, nil
}

func checkEnrollRequest(req vaultapi.EnrollRequest) error {
	if !vaultapi.ValidID(req.CredentialID) || !vaultapi.ValidSHA256Hex(req.CredentialSHA256) {
		return vaultapi.Errorf(vaultapi.CodeBadRequest, "credential_id must be 24 lower-case hex digits and credential_sha256 64")
	}
	if len(req.Host) > 255 || strings.ContainsFunc(req.Host, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		return vaultapi.Errorf(vaultapi.CodeBadRequest, "host must be at most 255 printable characters")
	}
	return nil
}

func errInvalidToken() error {
	return vaultapi.Errorf(vaultapi.CodeInvalidCredential, "invalid enrollment token")
}

// usedBy reports whether a token's use was by req's credential.
func usedBy(u *tokenUse, req vaultapi.EnrollRequest) bool {
	return u != nil && u.CredentialID == req.CredentialID &&
		subtle.ConstantTimeCompare([]byte(u.CredentialSHA256), []byte(req.CredentialSHA256)) == 1
}

// checkToken reads a token and checks its secret; it returns the token and
// its tenant. It changes nothing. A token used by another credential, an
// expired token and a suspended tenant are refused here only when the
// token was not used by this credential (see validToken).
func (r *Registry) checkToken(ctx context.Context, tokID string, secret []byte) (*token, *Tenant, error) {
	tok, err := read[token](ctx, r.sw, tokenKey(tokID), maxDoc)
	if errors.Is(err, store.ErrNotFound) {
		hashMatches("", secret)
		return nil, nil, errInvalidToken()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading the enrollment token: %w", err)
	}
	if !hashMatches(tok.SecretSHA256, secret) {
		return nil, nil, errInvalidToken()
	}
	t, err := r.Tenant(ctx, tok.Tenant)
	if err != nil {
		return nil, nil, err
	}
	return tok, t, nil
}

// validToken says why tok cannot enroll a new credential of t (nil when it
// can).
func validToken(tok *token, t *Tenant, now time.Time) error {
	if tok.Used != nil {
		return vaultapi.Errorf(vaultapi.CodeTokenUsed,
			"this enrollment token was already used on %s by another agent; ask your provider for a new one: cofferd tenant token %s",
			tok.Used.At.Format(time.RFC3339), t.Name)
	}
	if !now.Before(tok.Expires) {
		return vaultapi.Errorf(vaultapi.CodeTokenExpired,
			"enrollment token expired on %s; ask your provider for a new one: cofferd tenant token %s",
			tok.Expires.Format(time.RFC3339), t.Name)
	}
	if t.Suspended() {
		return suspendedError(t)
	}
	return nil
}

// enrolledCredential looks at the credential document req names. None:
// (nil, nil), enrollment goes on. This credential, active, in t: it is
// returned (a retry; nothing changes). Anything else is refused, with the
// document. spent says the token was used by this credential already.
func (r *Registry) enrolledCredential(ctx context.Context, t *Tenant, req vaultapi.EnrollRequest, spent bool) (*Credential, error) {
	have, err := read[Credential](ctx, r.sw, credKey(req.CredentialID), maxDoc)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading credential %s: %w", req.CredentialID, err)
	}
	return have, sameCredential(have, t, req, spent)
}

// owns reports whether have is req's credential in t (revoked or not).
func owns(have *Credential, t *Tenant, req vaultapi.EnrollRequest) bool {
	return have != nil && have.Tenant == t.ID &&
		subtle.ConstantTimeCompare([]byte(have.SecretSHA256), []byte(req.CredentialSHA256)) == 1
}

// sameCredential checks that have is req's credential, active, in t.
func sameCredential(have *Credential, t *Tenant, req vaultapi.EnrollRequest, spent bool) error {
	if !owns(have, t, req) {
		return vaultapi.Errorf(vaultapi.CodeCredentialIDTaken,
			"credential id %s is taken; draw a new credential and enroll again with the same token (it was not used)", req.CredentialID)
	}
	if !have.IsRevoked() {
		return nil
	}
	next := "enroll again with the same token (it was not used)"
	if spent {
		next = "ask your provider for a new token (this one enrolled it and is used up): cofferd tenant token " + t.Name
	}
	return vaultapi.Errorf(vaultapi.CodeCredentialIDTaken,
		"credential %s was revoked on %s and cannot be enrolled again; draw a new credential and %s",
		req.CredentialID, have.Revoked.Format(time.RFC3339), next)
}

// claimToken marks the token used by req's credential, checking again
// under the compare-and-swap everything checkToken and validToken check.
func (r *Registry) claimToken(ctx context.Context, tokID string, secret []byte, req vaultapi.EnrollRequest) error {
	now := r.now()
	_, err := Update(ctx, r.sw, tokenKey(tokID), maxDoc, func(cur *token, exists bool) (*token, error) {
		if !exists || !hashMatches(cur.SecretSHA256, secret) {
			return nil, errInvalidToken()
		}
		if usedBy(cur.Used, req) {
			return cur, nil // a Swap whose reply was lost
		}
		t, err := r.Tenant(ctx, cur.Tenant)
		if err != nil {
			return nil, err
		}
		if err := validToken(cur, t, now); err != nil {
			return nil, err
		}
		next := *cur
		next.Used = &tokenUse{At: now, CredentialID: req.CredentialID, CredentialSHA256: req.CredentialSHA256}
		return &next, nil
	})
	return err
}

// releaseToken gives back a token that req's credential claimed but that
// was refused. It is best effort: the refusal the caller returns matters
// more than a failure here.
func (r *Registry) releaseToken(ctx context.Context, tokID string, req vaultapi.EnrollRequest) {
	_, _ = Update(ctx, r.sw, tokenKey(tokID), maxDoc, func(cur *token, exists bool) (*token, error) {
		if !exists || !usedBy(cur.Used, req) {
			return cur, nil
		}
		next := *cur
		next.Used = nil
		return &next, nil
	})
}

// storeCredential creates req's credential document. When one appeared
// since enrolledCredential looked (a concurrent enrollment), it is
// accepted only when it is this credential.
func (r *Registry) storeCredential(ctx context.Context, t *Tenant, tokID string, req vaultapi.EnrollRequest) (*Credential, error) {
	cred := &Credential{ID: req.CredentialID, Tenant: t.ID, SecretSHA256: req.CredentialSHA256,
		Host: req.Host, Token: tokID, Created: r.now()}
	err := create(ctx, r.sw, credKey(cred.ID), cred)
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrExists) {
		have, err := r.enrolledCredential(ctx, t, req, false)
		if err == nil && have == nil {
			err = fmt.Errorf("storing credential %s: it vanished while being created; enroll again", cred.ID)
		}
		return have, err
	}
	if err != nil {
		return nil, fmt.Errorf("storing credential %s: %w", cred.ID, err)
	}
	return cred, nil
}
