package vaultapi

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// Prefixes of tokens and credentials; they make leaked secrets greppable.
const (
	CredentialPrefix = "cfa1_"
	TokenPrefix      = "cft1_"
)

const (
	idLen        = 24 // 12 random bytes, lower hex
	secretLen    = 43 // 32 random bytes, base64url without padding
	secretBytes  = 32
	formattedLen = 5 + idLen + 1 + secretLen
)

var secretEncoding = base64.RawURLEncoding.Strict()

// ErrMalformedCredential and ErrMalformedToken are returned by
// ParseCredential and ParseToken. Their messages never echo the input.
var (
	ErrMalformedCredential = errors.New("malformed credential (want cfa1_<24 hex>_<43 base64url characters>)")
	ErrMalformedToken      = errors.New("malformed enrollment token (want cft1_<24 hex>_<43 base64url characters>)")
)

// ParseCredential splits an agent credential cfa1_<id>_<secret> into its id
// and its 32 secret bytes.
func ParseCredential(s string) (id string, secret []byte, err error) {
	return parseSecret(s, CredentialPrefix, ErrMalformedCredential)
}

// ParseToken splits an enrollment token cft1_<id>_<secret> into its id and
// its 32 secret bytes.
func ParseToken(s string) (id string, secret []byte, err error) {
	return parseSecret(s, TokenPrefix, ErrMalformedToken)
}

func parseSecret(s, prefix string, bad error) (string, []byte, error) {
	if len(s) != formattedLen || s[:5] != prefix || s[5+idLen] != '_' {
		return "", nil, bad
	}
	id, enc := s[5:5+idLen], s[5+idLen+1:]
	if !ValidID(id) {
		return "", nil, bad
	}
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return "", nil, bad
		}
	}
	secret, err := secretEncoding.DecodeString(enc)
	if err != nil || len(secret) != secretBytes {
		return "", nil, bad
	}
	return id, secret, nil
}

// SecretSHA256 is the digest the vault stores for a token or credential:
// SHA-256 of the 32 decoded secret bytes.
func SecretSHA256(secret []byte) [32]byte { return sha256.Sum256(secret) }

// NewCredential draws an agent credential from crypto/rand. It returns the
// credential, its id, and the SHA-256 of its secret (what enrollment sends
// as CredentialSHA256, hex encoded).
func NewCredential() (cred Secret, id string, sha [32]byte, err error) {
	return newSecret(CredentialPrefix)
}

// NewToken draws an enrollment token, like NewCredential.
func NewToken() (tok Secret, id string, sha [32]byte, err error) {
	return newSecret(TokenPrefix)
}

func newSecret(prefix string) (Secret, string, [32]byte, error) {
	id, err := NewID()
	if err != nil {
		return "", "", [32]byte{}, err
	}
	var b [secretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", [32]byte{}, fmt.Errorf("drawing a secret: %w", err)
	}
	s := Secret(prefix + id + "_" + secretEncoding.EncodeToString(b[:]))
	return s, id, SecretSHA256(b[:]), nil
}

// NewID draws a 12-byte random id in lower hex (tenant, token, credential).
func NewID() (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("drawing an id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// ValidID reports whether s is 24 lower-case hex digits, the form of
// tenant, token and credential ids.
func ValidID(s string) bool { return len(s) == idLen && isLowerHex(s) }

// ValidTenantID reports whether s is a tenant id (24 lower hex).
func ValidTenantID(s string) bool { return ValidID(s) }

// ValidTenantName reports whether s is a tenant name: 1 to 63 characters
// of [a-z0-9-], starting and ending with a letter or digit.
func ValidTenantName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidSHA256Hex reports whether s is 64 lower-case hex digits.
func ValidSHA256Hex(s string) bool { return isHex64(s) }
