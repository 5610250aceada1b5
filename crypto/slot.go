package crypto

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"
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

// Slot is one key slot: the master key wrapped for one way of unlocking it.
// It is stored as JSON in the object keys/<sha256 of the JSON bytes>.
type Slot struct {
	Version int       `json:"version"`
	Type    string    `json:"type"`
	Created time.Time `json:"created"`
	// Host, Note and Credential are what the writer claims about
	// itself: its host name, a free note, and the id (never the secret) of
	// the vault credential it wrote through. Nobody checks them.
	Host       string     `json:"host,omitempty"`
	Note       string     `json:"note,omitempty"`
	Credential string     `json:"credential,omitempty"`
	KDF        *KDFParams `json:"kdf,omitempty"`
	// Form is how a passphrase slot's passphrase becomes argon2id's
	// input: FormNFC for every new slot, FormRaw (absent) for older ones.
	Form string `json:"passphrase_form,omitempty"`
	// Recipient is the age public key an escrow-age slot is sealed to.
	Recipient string `json:"recipient,omitempty"`
	// Sealed is the master key sealed with XAES-256-GCM under the key
	// the slot's method yields, or for an escrow-age slot the age file
	// that holds it (base64 in JSON).
	Sealed []byte `json:"sealed"`
}

// slotAD binds a sealed master key to the slot format and type.
func slotAD(typ string) []byte { return []byte("coffer key slot v1 " + typ) }

// NewPassphraseSlot wraps the master key under a passphrase, normalised to
// NFC. It refuses parameters over DefaultKDFLimit: agents would skip the
// slot.
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
	if err := DefaultKDFLimit.Check(p); err != nil {
		return nil, err
	}
	s, err := NewSealer(deriveSlotKey(passphrase, &p, FormNFC))
	if err != nil {
		return nil, err
	}
	return &Slot{
		Version: SlotVersion,
		Type:    SlotPassphrase,
		Created: now.UTC(),
		Host:    host,
		KDF:     &p,
		Form:    FormNFC,
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
		if s.Form != FormRaw && s.Form != FormNFC {
			return nil, fmt.Errorf("key slot %s has unknown passphrase_form %q; this coffer knows \"nfc\"", what, s.Form)
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
// (wrapped) when the passphrase does not open the slot, and refuses,
// without running argon2id, a slot over DefaultKDFLimit.
func (s *Slot) OpenWithPassphrase(passphrase []byte) (*MasterKey, error) {
	return s.OpenWithPassphraseLimit(passphrase, DefaultKDFLimit)
}

// OpenWithPassphraseLimit is OpenWithPassphrase under another KDF limit.
func (s *Slot) OpenWithPassphraseLimit(passphrase []byte, limit KDFLimit) (*MasterKey, error) {
	if s.Type != SlotPassphrase || s.KDF == nil {
		return nil, fmt.Errorf("not a passphrase slot")
	}
	if err := limit.Check(*s.KDF); err != nil {
		return nil, fmt.Errorf("key slot not tried: %w", err)
	}
	sealer, err := NewSealer(deriveSlotKey(passphrase, s.KDF, s.Form))
	if err != nil {
		return nil, err
	}
	raw, err := sealer.Open(nil, s.Sealed, slotAD(SlotPassphrase), "key slot")
	if err != nil {
		return nil, ErrWrongPassphrase
	}
	return masterKeyFromBytes(raw)
}
