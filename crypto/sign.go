package crypto

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/zeebo/blake3"
)

// ctxSign derives the tenant's signing key (seed manifests). Part of the
// format, like the other contexts: the vault holds the public half.
const ctxSign = "coffer 2026-12 seed signing key v1"

// SigningKey is a repository's Ed25519 signing key, derived from its master
// key, so every machine that opens the repository signs with the same key
// and nothing new is stored. It signs seed manifests; the vault learns the
// public half when the repository is created or joined and verifies seeds
// without any data key. String and GoString never print the key.
type SigningKey struct {
	priv ed25519.PrivateKey
}

func (k SigningKey) String() string   { return "SigningKey(redacted)" }
func (k SigningKey) GoString() string { return "SigningKey(redacted)" }

// SigningKey returns the repository's signing key.
func (k *Keys) SigningKey() *SigningKey {
	var seed [ed25519.SeedSize]byte
	blake3.DeriveKey(ctxSign, k.master.raw[:], seed[:])
	return &SigningKey{priv: ed25519.NewKeyFromSeed(seed[:])}
}

// Public returns the public half in its text form (PublicKeyText).
func (k *SigningKey) Public() string {
	return PublicKeyText(k.priv.Public().(ed25519.PublicKey))
}

// Sign signs msg under a domain: the same bytes signed for another purpose
// never verify as this one.
func (k *SigningKey) Sign(domain string, msg []byte) []byte {
	return ed25519.Sign(k.priv, domainMessage(domain, msg))
}

func domainMessage(domain string, msg []byte) []byte {
	b := make([]byte, 0, len(domain)+1+len(msg))
	b = append(b, domain...)
	b = append(b, 0)
	return append(b, msg...)
}

// signingKeyPrefix starts the text form of a public signing key.
const signingKeyPrefix = "ed25519:"

// PublicKeyText is the text form of an Ed25519 public key:
// "ed25519:" and 64 lower-case hex digits.
func PublicKeyText(pub ed25519.PublicKey) string {
	return signingKeyPrefix + hex.EncodeToString(pub)
}

// ParsePublicKey parses PublicKeyText's form.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	h, ok := strings.CutPrefix(s, signingKeyPrefix)
	if !ok || len(h) != 2*ed25519.PublicKeySize || strings.ToLower(h) != h {
		return nil, errors.New(`a public signing key is "ed25519:" and 64 lower-case hex digits`)
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, errors.New(`a public signing key is "ed25519:" and 64 lower-case hex digits`)
	}
	return ed25519.PublicKey(b), nil
}

// VerifySignature checks sig over msg under domain with the public key in
// text form. Its error says which: a malformed key, or a signature that
// does not match.
func VerifySignature(public, domain string, msg, sig []byte) error {
	pub, err := ParsePublicKey(public)
	if err != nil {
		return err
	}
	if len(sig) != ed25519.SignatureSize || !ed25519.Verify(pub, domainMessage(domain, msg), sig) {
		return ErrBadSignature
	}
	return nil
}

// ErrBadSignature is a signature that does not verify.
var ErrBadSignature = errors.New("the signature does not match: the signed bytes were changed, or another key signed them")

// SigningKeyFingerprint is a short name for a public signing key in
// messages and reports: the first 16 hex digits of its SHA-256.
func SigningKeyFingerprint(public string) string {
	sum := sha256.Sum256([]byte(public))
	return fmt.Sprintf("%x", sum[:8])
}
