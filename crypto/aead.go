package crypto

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// Overhead is the number of bytes sealing adds: a 24-byte random nonce in
// front and a 16-byte GCM tag behind.
const Overhead = xaesNonceSize + xaesTagSize

// ErrAuth is returned (wrapped) when a sealed object fails authentication:
// it was damaged, tampered with, or sealed under another key.
var ErrAuth = errors.New("authentication failed: the object is damaged, tampered with, or belongs to another repository")

// Sealer encrypts and authenticates objects with XAES-256-GCM and random
// 192-bit nonces. It is safe for concurrent use.
type Sealer struct {
	x *xaes
}

// NewSealer returns a sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	x, err := newXAES(key)
	if err != nil {
		return nil, err
	}
	return &Sealer{x: x}, nil
}

// Seal appends nonce || ciphertext || tag of plaintext to dst and returns the
// result. ad is authenticated but not stored; Open must be given the same ad.
// When dst has room for the result it is not reallocated, so a caller can
// seal into a slice it reserved.
func (s *Sealer) Seal(dst, plaintext, ad []byte) []byte {
	n := len(dst)
	dst = growSlice(dst, len(plaintext)+Overhead)
	nonce := dst[n : n+xaesNonceSize]
	if _, err := rand.Read(nonce); err != nil {
		// crypto/rand never fails on supported platforms (Go 1.24+).
		panic("crypto: reading nonce: " + err.Error())
	}
	return s.x.seal(dst[:n+xaesNonceSize], nonce, plaintext, ad)
}

// Open authenticates and decrypts a sealed object and appends the plaintext
// to dst. what names the object in the error.
func (s *Sealer) Open(dst, sealed, ad []byte, what string) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%s: sealed data is %d bytes, shorter than the %d-byte minimum: %w", what, len(sealed), Overhead, ErrAuth)
	}
	out, err := s.x.open(dst, sealed[:xaesNonceSize], sealed[xaesNonceSize:], ad)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, ErrAuth)
	}
	return out, nil
}

// OpenInPlace is Open with the plaintext written over the sealed bytes: it
// returns a slice of sealed, whose bytes are overwritten whether or not
// opening succeeds. It saves a buffer the size of the object, and with it a
// pass through memory that the plaintext's consumer would otherwise pay.
func (s *Sealer) OpenInPlace(sealed, ad []byte, what string) ([]byte, error) {
	if len(sealed) < Overhead {
		return s.Open(nil, sealed, ad, what)
	}
	ct := sealed[xaesNonceSize:]
	return s.Open(ct[:0], sealed, ad, what)
}

func growSlice(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n)
	copy(nb, b)
	return nb
}
