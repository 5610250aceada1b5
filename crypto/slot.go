package crypto

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/crypto/argon2"
)

// SlotVersion is the version of the key slot format this code writes.
const SlotVersion = 1

// Slot types.
const (
	SlotPassphrase = "passphrase"
	SlotEscrowAge  = "escrow-age" // sealed to the MSP's age key (escrow.go)
)

// ErrWrongPassphrase is returned when no passphrase slot opens with the
// passphrase given.
var ErrWrongPassphrase = errors.New("wrong passphrase: no key slot of this repository opens with it")

// KDFParams are the argon2id parameters of a passphrase slot. They are stored
// in the slot, so they can be raised for new slots without breaking old ones.
type KDFParams struct {
	Name      string `json:"name"`       // always "argon2id"
	Time      uint32 `json:"time"`       // iterations
	MemoryKiB uint32 `json:"memory_kib"` // memory in KiB
	Threads   uint8  `json:"threads"`
	Salt      []byte `json:"salt"` // 32 random bytes (base64 in JSON)
}

// DefaultKDF returns the argon2id parameters for new passphrase slots: 3
// passes over 64 MiB with 4 lanes, the RFC 9106 second recommendation.
//
// The environment variable COFFER_INSECURE_TEST_KDF=1 selects tiny
// parameters so test suites can create many repositories quickly. It prints a
// warning, and the weak parameters are recorded in the slot for all to see.
func DefaultKDF() KDFParams {
	if os.Getenv("COFFER_INSECURE_TEST_KDF") == "1" {
		fmt.Fprintln(os.Stderr, "warning: COFFER_INSECURE_TEST_KDF=1: this key slot uses test-only KDF parameters and is easy to brute-force")
		return KDFParams{Name: "argon2id", Time: 1, MemoryKiB: 64, Threads: 1}
	}
	return KDFParams{Name: "argon2id", Time: 3, MemoryKiB: 64 * 1024, Threads: 4}
}

func (p KDFParams) validate() error {
	switch {
	case p.Name != "argon2id":
		return fmt.Errorf("unknown KDF %q", p.Name)
	// The caps bound what a hostile slot can make Open cost.
	case p.Time < 1 || p.Time > 20:
		return fmt.Errorf("argon2id time %d out of range 1..20", p.Time)
	case p.MemoryKiB < 8 || p.MemoryKiB > 1<<20:
		return fmt.Errorf("argon2id memory %d KiB out of range 8 KiB..1 GiB", p.MemoryKiB)
	case p.Threads < 1 || p.Threads > 16:
		return fmt.Errorf("argon2id threads %d out of range 1..16", p.Threads)
	case len(p.Salt) != 32:
		return fmt.Errorf("salt is %d bytes, want 32", len(p.Salt))
	}
	return nil
}

// Slot is one key slot: the master key wrapped for one way of unlocking it.
// It is stored as JSON in the object keys/<sha256 of the JSON bytes>.
type Slot struct {
	Version int        `json:"version"`
	Type    string     `json:"type"`
	Created time.Time  `json:"created"`
	Host    string     `json:"host,omitempty"`
	Note    string     `json:"note,omitempty"`
	KDF     *KDFParams `json:"kdf,omitempty"`
	// Recipient is the age public key an escrow-age slot is sealed to.
	Recipient string `json:"recipient,omitempty"`
	// Sealed is the master key sealed with XAES-256-GCM under the key
	// the slot's method yields, or for an escrow-age slot the age file
	// that holds it (base64 in JSON).
	Sealed []byte `json:"sealed"`
}

// slotAD binds a sealed master key to the slot format and type.
func slotAD(typ string) []byte { return []byte("coffer key slot v1 " + typ) }

// NewPassphraseSlot wraps the master key under a passphrase.
func NewPassphraseSlot(mk *MasterKey, passphrase []byte, p KDFParams, now time.Time, host string) (*Slot, error) {
	if len(passphrase) == 0 {
		return nil, errors.New("the passphrase is empty")
	}
	if p.Salt == nil {
		p.Salt = make([]byte, 32)
		if _, err := rand.Read(p.Salt); err != nil {
			return nil, err
		}
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	s, err := NewSealer(argon2.IDKey(passphrase, p.Salt, p.Time, p.MemoryKiB, p.Threads, KeySize))
	if err != nil {
		return nil, err
	}
	return &Slot{
		Version: SlotVersion,
		Type:    SlotPassphrase,
		Created: now.UTC(),
		Host:    host,
		KDF:     &p,
		Sealed:  s.Seal(nil, mk.raw[:], slotAD(SlotPassphrase)),
	}, nil
}

// ParseSlot decodes and validates a key slot. what names the object.
func ParseSlot(b []byte, what string) (*Slot, error) {
	var s Slot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("key slot %s is not valid JSON: %v", what, err)
	}
	if s.Version != SlotVersion {
		return nil, fmt.Errorf("key slot %s has version %d; this coffer reads version %d", what, s.Version, SlotVersion)
	}
	switch s.Type {
	case SlotPassphrase:
		if s.KDF == nil {
			return nil, fmt.Errorf("key slot %s: passphrase slot without KDF parameters", what)
		}
		if err := s.KDF.validate(); err != nil {
			return nil, fmt.Errorf("key slot %s: %v", what, err)
		}
		if s.Recipient != "" {
			return nil, fmt.Errorf("key slot %s: passphrase slot with an escrow recipient", what)
		}
		if len(s.Sealed) != KeySize+Overhead {
			return nil, fmt.Errorf("key slot %s: sealed key is %d bytes, want %d", what, len(s.Sealed), KeySize+Overhead)
		}
	case SlotEscrowAge:
		if err := validateEscrowSlot(&s); err != nil {
			return nil, fmt.Errorf("key slot %s: %v", what, err)
		}
	default:
		return nil, fmt.Errorf("key slot %s has unknown type %q", what, s.Type)
	}
	return &s, nil
}

// Marshal encodes the slot as stored.
func (s *Slot) Marshal() ([]byte, error) { return json.Marshal(s) }

// OpenWithPassphrase unwraps the master key. It returns ErrWrongPassphrase
// (wrapped) when the passphrase does not open the slot.
func (s *Slot) OpenWithPassphrase(passphrase []byte) (*MasterKey, error) {
	if s.Type != SlotPassphrase || s.KDF == nil {
		return nil, fmt.Errorf("not a passphrase slot")
	}
	p := s.KDF
	sealer, err := NewSealer(argon2.IDKey(passphrase, p.Salt, p.Time, p.MemoryKiB, p.Threads, KeySize))
	if err != nil {
		return nil, err
	}
	raw, err := sealer.Open(nil, s.Sealed, slotAD(SlotPassphrase), "key slot")
	if err != nil {
		return nil, ErrWrongPassphrase
	}
	return masterKeyFromBytes(raw)
}
