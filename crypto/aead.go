package crypto

import (
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// Overhead is the number of bytes sealing adds: a 24-byte random nonce in
// front and a 16-byte Poly1305 tag behind.
const Overhead = chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead

// ErrAuth is returned (wrapped) when a sealed object fails authentication:
// it was damaged, tampered with, or sealed under another key.
var ErrAuth = errors.New("authentication failed: the object is damaged, tampered with, or belongs to another repository")

// Sealer encrypts and authenticates objects with XChaCha20-Poly1305 and
// random 192-bit nonces. It is safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: a}, nil
}

// Seal appends nonce || ciphertext || tag of plaintext to dst and returns the
// result. ad is authenticated but not stored; Open must be given the same ad.
func (s *Sealer) Seal(dst, plaintext, ad []byte) []byte {
	n := len(dst)
	dst = growSlice(dst, len(plaintext)+Overhead)
	nonce := dst[n : n+chacha20poly1305.NonceSizeX]
	if _, err := rand.Read(nonce); err != nil {
		// crypto/rand never fails on supported platforms (Go 1.24+).
		panic("crypto: reading nonce: " + err.Error())
	}
	return s.aead.Seal(dst[:n+len(nonce)], nonce, plaintext, ad)
}

// Open authenticates and decrypts a sealed object and appends the plaintext
// to dst. what names the object in the error.
func (s *Sealer) Open(dst, sealed, ad []byte, what string) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%s: sealed data is %d bytes, shorter than the %d-byte minimum: %w", what, len(sealed), Overhead, ErrAuth)
	}
	nonce := sealed[:chacha20poly1305.NonceSizeX]
	out, err := s.aead.Open(dst, nonce, sealed[len(nonce):], ad)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, ErrAuth)
	}
	return out, nil
}

func growSlice(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n)
	copy(nb, b)
	return nb
}
