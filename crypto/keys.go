package crypto

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/restic/chunker"
	"github.com/zeebo/blake3"
)

// KeySize is the size of the master key and of every derived subkey.
const KeySize = 32

// IDSize is the size of a chunk ID.
const IDSize = 32

// Derivation contexts for BLAKE3's derive_key mode. They are part of the
// format: changing one makes every existing repository unreadable.
const (
	ctxData   = "coffer 2026-11 data encryption key v1"
	ctxID     = "coffer 2026-11 chunk id key v1"
	ctxPoly   = "coffer 2026-11 chunker polynomial v1"
	ctxConfig = "coffer 2026-11 config mac key v1"
)

// MasterKey is a repository's root secret. It is only ever stored wrapped in
// key slots. Its String and GoString methods never print the key.
type MasterKey struct {
	raw [KeySize]byte
}

func (k MasterKey) String() string   { return "MasterKey(redacted)" }
func (k MasterKey) GoString() string { return "MasterKey(redacted)" }

// NewMasterKey returns a fresh random master key.
func NewMasterKey() (*MasterKey, error) {
	k := &MasterKey{}
	if _, err := rand.Read(k.raw[:]); err != nil {
		return nil, fmt.Errorf("reading random bytes for the master key: %w", err)
	}
	return k, nil
}

// masterKeyFromBytes copies b into a master key.
func masterKeyFromBytes(b []byte) (*MasterKey, error) {
	if len(b) != KeySize {
		return nil, errors.New("master key has the wrong length")
	}
	k := &MasterKey{}
	copy(k.raw[:], b)
	return k, nil
}

// Equal reports whether two master keys are the same, in constant time.
func (k *MasterKey) Equal(o *MasterKey) bool {
	return subtle.ConstantTimeCompare(k.raw[:], o.raw[:]) == 1
}

// Keys are the working keys of an open repository, all derived from the
// master key with BLAKE3 in derive_key mode.
type Keys struct {
	master  *MasterKey
	data    *Sealer
	idKey   [KeySize]byte
	config  [KeySize]byte
	polyKey [KeySize]byte
}

// String and GoString keep the working keys out of logs and panics.
func (k Keys) String() string   { return "Keys(redacted)" }
func (k Keys) GoString() string { return "Keys(redacted)" }

// Derive computes the working keys of a master key.
func Derive(mk *MasterKey) (*Keys, error) {
	k := &Keys{master: mk}
	var dataKey [KeySize]byte
	blake3.DeriveKey(ctxData, mk.raw[:], dataKey[:])
	blake3.DeriveKey(ctxID, mk.raw[:], k.idKey[:])
	blake3.DeriveKey(ctxConfig, mk.raw[:], k.config[:])
	blake3.DeriveKey(ctxPoly, mk.raw[:], k.polyKey[:])
	s, err := NewSealer(dataKey[:])
	if err != nil {
		return nil, err
	}
	k.data = s
	return k, nil
}

// Master returns the master key the working keys were derived from.
func (k *Keys) Master() *MasterKey { return k.master }

// Data returns the sealer for stored objects.
func (k *Keys) Data() *Sealer { return k.data }

// Polynomial returns the repository's secret chunker polynomial: an
// irreducible polynomial of degree 53 drawn deterministically from a BLAKE3
// stream keyed by the master key, so that it never needs storing.
func (k *Keys) Polynomial() (chunker.Pol, error) {
	h, err := blake3.NewKeyed(k.polyKey[:])
	if err != nil {
		return 0, err
	}
	return chunker.DerivePolynomial(h.Digest())
}

// ID is a chunk ID: the keyed BLAKE3 hash of a chunk's plaintext.
type ID [IDSize]byte

// String returns the ID in lower-case hex.
func (id ID) String() string { return fmt.Sprintf("%x", id[:]) }

// IDHasher computes chunk IDs. It is cheap to create and not safe for
// concurrent use; make one per goroutine.
type IDHasher struct {
	h *blake3.Hasher
}

// NewIDHasher returns a hasher for chunk IDs of this repository.
func (k *Keys) NewIDHasher() *IDHasher {
	h, err := blake3.NewKeyed(k.idKey[:])
	if err != nil {
		// The key is always KeySize bytes, so this cannot happen.
		panic("crypto: blake3 keyed hasher: " + err.Error())
	}
	return &IDHasher{h: h}
}

// Sum returns the chunk ID of data.
func (x *IDHasher) Sum(data []byte) ID {
	x.h.Reset()
	_, _ = x.h.Write(data)
	var id ID
	x.h.Sum(id[:0])
	return id
}

// ConfigMAC returns the keyed BLAKE3 MAC of a repository config body.
func (k *Keys) ConfigMAC(body []byte) []byte {
	h, err := blake3.NewKeyed(k.config[:])
	if err != nil {
		panic("crypto: blake3 keyed hasher: " + err.Error())
	}
	_, _ = h.Write(body)
	return h.Sum(nil)
}

// CheckConfigMAC reports whether mac is the MAC of body, in constant time.
func (k *Keys) CheckConfigMAC(body, mac []byte) bool {
	return subtle.ConstantTimeCompare(k.ConfigMAC(body), mac) == 1
}

// RevealMasterKey returns a copy of the master key's bytes, for the one
// place that keeps it outside a key slot: the agent's key cache (a 0600
// file in its config directory). Never print or log the result.
func RevealMasterKey(k *MasterKey) []byte { return append([]byte(nil), k.raw[:]...) }

// MasterKeyFromBytes is RevealMasterKey's inverse. A key read this way is
// unverified: check it against the repository's config MAC before use.
func MasterKeyFromBytes(b []byte) (*MasterKey, error) { return masterKeyFromBytes(b) }
