package crypto

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"filippo.io/age"
)

// Escrow: a key slot of type "escrow-age" holds the master key sealed with
// age to the MSP's escrow public key (a recipient). The MSP keeps the
// matching identity offline and can open the slot when a tenant has lost
// every passphrase. The vault itself only ever sees the recipient.

// escrowPrefix is prepended to the master key inside the age file, so a
// file sealed to the same recipient for another purpose never opens as a
// key slot.
const escrowPrefix = "coffer key slot v1 escrow-age\x00"

// Bounds of an escrow slot's fields. A hybrid (ML-KEM-768 + X25519) age
// file holding the 62-byte payload is about 1.7 KB; an X25519 one about 250
// bytes. A hybrid recipient is about 1960 characters.
const (
	minEscrowSealed    = 64
	maxEscrowSealed    = 8192
	maxEscrowRecipient = 4096
)

// ageMagic starts every binary age file.
const ageMagic = "age-encryption.org/v1\n"

// ErrEscrowIdentity is returned (wrapped) when the identities given do not
// open an escrow slot.
var ErrEscrowIdentity = errors.New("the escrow identity does not open this key slot")

// ParseEscrowRecipient parses an age recipient usable for escrow: a hybrid
// post-quantum one ("age1pq1…") or an X25519 one ("age1…").
func ParseEscrowRecipient(s string) (age.Recipient, error) {
	if len(s) > maxEscrowRecipient {
		return nil, fmt.Errorf("escrow recipient is %d characters, more than %d", len(s), maxEscrowRecipient)
	}
	switch {
	case strings.HasPrefix(s, "age1pq1"):
		r, err := age.ParseHybridRecipient(s)
		if err != nil {
			return nil, errors.New("escrow recipient is malformed: not a valid age1pq1 public key")
		}
		return r, nil
	case strings.HasPrefix(s, "age1"):
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, errors.New("escrow recipient is malformed: not a valid age1 public key")
		}
		return r, nil
	}
	return nil, errors.New("escrow recipient is not an age public key (age1pq1… or age1…)")
}

// EscrowFingerprint is the short name of an escrow recipient that people
// compare out of band: the first 16 hex digits of SHA-256 of its text.
func EscrowFingerprint(recipient string) string {
	sum := sha256.Sum256([]byte(recipient))
	return hex.EncodeToString(sum[:8])
}

// EscrowKeyPair is a freshly generated escrow key. Identity is the secret
// half (an age identity line); String never prints it.
type EscrowKeyPair struct {
	identity  string
	Recipient string
}

func (k EscrowKeyPair) String() string {
	return "EscrowKeyPair(" + EscrowFingerprint(k.Recipient) + ", identity redacted)"
}
func (k EscrowKeyPair) GoString() string { return k.String() }

// Identity returns the secret identity line, for writing to the offline
// key file only.
func (k EscrowKeyPair) Identity() string { return k.identity }

// GenerateEscrowKey makes a new escrow key pair: hybrid ML-KEM-768 + X25519
// (post-quantum; escrowed keys live for years), or X25519 when classic.
func GenerateEscrowKey(classic bool) (*EscrowKeyPair, error) {
	if classic {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return nil, err
		}
		return &EscrowKeyPair{identity: id.String(), Recipient: id.Recipient().String()}, nil
	}
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		return nil, err
	}
	return &EscrowKeyPair{identity: id.String(), Recipient: id.Recipient().String()}, nil
}

// ParseEscrowIdentities reads an age identity file (as written by
// cofferd escrow init). Errors never quote the file's content.
func ParseEscrowIdentities(r io.Reader) ([]age.Identity, error) {
	ids, err := age.ParseIdentities(r)
	if err != nil {
		return nil, fmt.Errorf("reading the escrow identity: %v", err)
	}
	return ids, nil
}

// NewEscrowSlot seals the master key to an escrow recipient.
func NewEscrowSlot(mk *MasterKey, recipient string, now time.Time, host string) (*Slot, error) {
	rcpt, err := ParseEscrowRecipient(recipient)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, rcpt)
	if err != nil {
		return nil, fmt.Errorf("sealing the master key to the escrow key: %v", err)
	}
	payload := make([]byte, 0, len(escrowPrefix)+KeySize)
	payload = append(append(payload, escrowPrefix...), mk.raw[:]...)
	_, err = w.Write(payload)
	clear(payload)
	if err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	s := &Slot{
		Version:   SlotVersion,
		Type:      SlotEscrowAge,
		Created:   now.UTC(),
		Host:      host,
		Recipient: recipient,
		Sealed:    buf.Bytes(),
	}
	if err := validateEscrowSlot(s); err != nil {
		return nil, fmt.Errorf("new escrow slot: %v", err)
	}
	return s, nil
}

func validateEscrowSlot(s *Slot) error {
	if s.KDF != nil || s.Form != FormRaw {
		return errors.New("escrow slot with KDF parameters or a passphrase_form")
	}
	if _, err := ParseEscrowRecipient(s.Recipient); err != nil {
		return err
	}
	if n := len(s.Sealed); n < minEscrowSealed || n > maxEscrowSealed {
		return fmt.Errorf("escrow slot: sealed key is %d bytes, want %d to %d", n, minEscrowSealed, maxEscrowSealed)
	}
	if !bytes.HasPrefix(s.Sealed, []byte(ageMagic)) {
		return errors.New("escrow slot: sealed key is not a binary age file")
	}
	return nil
}

// EscrowFingerprint returns the fingerprint of the slot's recipient.
func (s *Slot) EscrowFingerprint() string { return EscrowFingerprint(s.Recipient) }

// OpenWithIdentity unwraps the master key of an escrow-age slot with the
// MSP's offline identity. It returns ErrEscrowIdentity (wrapped) when no
// identity matches, and a "damaged" error when the slot fails
// authentication.
func (s *Slot) OpenWithIdentity(ids ...age.Identity) (*MasterKey, error) {
	if s.Type != SlotEscrowAge {
		return nil, fmt.Errorf("not an escrow slot (type %q)", s.Type)
	}
	if len(ids) == 0 {
		return nil, errors.New("no escrow identity given")
	}
	if err := validateEscrowSlot(s); err != nil {
		return nil, err
	}
	r, err := age.Decrypt(bytes.NewReader(s.Sealed), ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			return nil, fmt.Errorf("%w: it is sealed to escrow key %s", ErrEscrowIdentity, s.EscrowFingerprint())
		}
		return nil, fmt.Errorf("escrow slot is damaged: %v", err)
	}
	want := len(escrowPrefix) + KeySize
	buf := make([]byte, want+1)
	n, err := io.ReadFull(r, buf)
	defer clear(buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("escrow slot is damaged: %v", err)
	}
	if n != want || !bytes.HasPrefix(buf, []byte(escrowPrefix)) {
		return nil, errors.New("escrow slot is damaged: its content is not a Coffer master key")
	}
	return masterKeyFromBytes(buf[len(escrowPrefix):want])
}
