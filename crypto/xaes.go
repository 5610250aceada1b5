package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
)

// XAES-256-GCM (https://c2sp.org/XAES-256-GCM): AES-256-GCM with a 192-bit
// nonce. Each message gets its own AES-256 key, derived from the main key
// and the first 96 bits of the nonce with a NIST SP 800-108 counter-mode KDF
// built on CMAC-AES; the last 96 bits are the GCM nonce. Random nonces are
// safe for far more than 2^32 messages per key (about 2^80), and AES-NI with
// carry-less multiplication runs it at twice XChaCha20-Poly1305's speed here.

const (
	xaesNonceSize = 24
	xaesTagSize   = 16
)

type xaes struct {
	block cipher.Block // AES-256 with the main key
	k1    [aes.BlockSize]byte
}

func newXAES(key []byte) (*xaes, error) {
	if len(key) != 32 {
		return nil, errors.New("XAES-256-GCM needs a 32-byte key")
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	x := &xaes{block: b}
	// K1 is the CMAC subkey: L = AES(K, 0^128), K1 = L << 1, xor 0x87 into
	// the last byte when the top bit of L was set.
	var l [aes.BlockSize]byte
	b.Encrypt(l[:], l[:])
	var msb byte
	for i := len(l) - 1; i >= 0; i-- {
		next := l[i] >> 7
		x.k1[i] = l[i]<<1 | msb
		msb = next
	}
	x.k1[len(x.k1)-1] ^= msb * 0x87
	return x, nil
}

// gcm returns AES-256-GCM under the key derived for this nonce.
func (x *xaes) gcm(nonce []byte) (cipher.AEAD, error) {
	var m1, m2 [aes.BlockSize]byte
	m1[1], m1[2] = 1, 'X'
	m2[1], m2[2] = 2, 'X'
	copy(m1[4:], nonce[:12])
	copy(m2[4:], nonce[:12])
	for i := range m1 {
		m1[i] ^= x.k1[i]
		m2[i] ^= x.k1[i]
	}
	var k [32]byte
	x.block.Encrypt(k[:16], m1[:])
	x.block.Encrypt(k[16:], m2[:])
	b, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// seal appends the ciphertext and tag of plaintext to dst.
func (x *xaes) seal(dst, nonce, plaintext, ad []byte) []byte {
	g, err := x.gcm(nonce)
	if err != nil {
		panic("crypto: XAES-256-GCM key derivation: " + err.Error()) // cannot happen: fixed sizes
	}
	return g.Seal(dst, nonce[12:], plaintext, ad)
}

// open appends the plaintext of ciphertext||tag to dst.
func (x *xaes) open(dst, nonce, ciphertext, ad []byte) ([]byte, error) {
	g, err := x.gcm(nonce)
	if err != nil {
		return nil, err
	}
	return g.Open(dst, nonce[12:], ciphertext, ad)
}
