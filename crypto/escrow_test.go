package crypto

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
)

var (
	escrowOnce sync.Once
	escrowKeys [2]*EscrowKeyPair
	escrowErr  error
)

// testEscrowKeys returns two hybrid key pairs, generated once per run.
func testEscrowKeys(t testing.TB) (*EscrowKeyPair, *EscrowKeyPair) {
	t.Helper()
	escrowOnce.Do(func() {
		for i := range escrowKeys {
			if escrowKeys[i], escrowErr = GenerateEscrowKey(false); escrowErr != nil {
				return
			}
		}
	})
	if escrowErr != nil {
		t.Fatal(escrowErr)
	}
	return escrowKeys[0], escrowKeys[1]
}

func identities(t testing.TB, k *EscrowKeyPair) []age.Identity {
	t.Helper()
	ids, err := ParseEscrowIdentities(strings.NewReader("# test\n" + k.Identity() + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestEscrowSlotRoundTrip(t *testing.T) {
	hybrid, _ := testEscrowKeys(t)
	classic, err := GenerateEscrowKey(true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hybrid.Recipient, "age1pq1") || !strings.HasPrefix(classic.Recipient, "age1") ||
		strings.HasPrefix(classic.Recipient, "age1pq1") {
		t.Fatalf("recipients %.12s… / %.12s…", hybrid.Recipient, classic.Recipient)
	}
	for _, k := range []*EscrowKeyPair{hybrid, classic} {
		mk := fixedMaster(t, 4)
		now := time.Date(2026, 11, 25, 1, 2, 3, 0, time.FixedZone("x", 7200))
		slot, err := NewEscrowSlot(mk, k.Recipient, now, "agent1")
		if err != nil {
			t.Fatal(err)
		}
		if slot.Type != SlotEscrowAge || slot.Version != SlotVersion || slot.KDF != nil || slot.Host != "agent1" ||
			slot.Recipient != k.Recipient || !slot.Created.Equal(now) || slot.Created.Location() != time.UTC {
			t.Fatalf("slot fields: %+v", slot)
		}
		b, err := slot.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, mk.raw[:]) || strings.Contains(string(b), hex.EncodeToString(mk.raw[:])) ||
			bytes.Contains(b, []byte(k.Identity())) {
			t.Fatal("the slot holds the master key or the identity in the clear")
		}
		parsed, err := ParseSlot(b, "keys/e")
		if err != nil {
			t.Fatal(err)
		}
		got, err := parsed.OpenWithIdentity(identities(t, k)...)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(mk) {
			t.Fatal("escrow slot opened to another master key")
		}
		// A passphrase does not open it, and it never claims to.
		if _, err := parsed.OpenWithPassphrase([]byte("pw")); err == nil {
			t.Fatal("escrow slot opened with a passphrase")
		}
		if len(parsed.EscrowFingerprint()) != 16 || parsed.EscrowFingerprint() != EscrowFingerprint(k.Recipient) {
			t.Fatalf("fingerprint %q", parsed.EscrowFingerprint())
		}
	}
}

func TestEscrowSlotWrongIdentity(t *testing.T) {
	k1, k2 := testEscrowKeys(t)
	slot, err := NewEscrowSlot(fixedMaster(t, 5), k1.Recipient, time.Now(), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = slot.OpenWithIdentity(identities(t, k2)...)
	if !errors.Is(err, ErrEscrowIdentity) || !strings.Contains(err.Error(), EscrowFingerprint(k1.Recipient)) {
		t.Fatalf("wrong identity: %v", err)
	}
	if strings.Contains(err.Error(), k2.Identity()) {
		t.Fatal("error quotes the identity")
	}
	if _, err := slot.OpenWithIdentity(); err == nil {
		t.Fatal("opened with no identity")
	}
	pass := &Slot{Version: 1, Type: SlotPassphrase}
	if _, err := pass.OpenWithIdentity(identities(t, k1)...); err == nil {
		t.Fatal("OpenWithIdentity on a passphrase slot")
	}
}

func TestEscrowSlotTampered(t *testing.T) {
	k, _ := testEscrowKeys(t)
	mk := fixedMaster(t, 6)
	slot, err := NewEscrowSlot(mk, k.Recipient, time.Now(), "h")
	if err != nil {
		t.Fatal(err)
	}
	b, err := slot.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ids := identities(t, k)
	other, err := GenerateEscrowKey(true)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) func(m map[string]any) {
		return func(m map[string]any) {
			s := bytes.Clone(slot.Sealed)
			s[i] ^= 1
			m["sealed"] = s
		}
	}
	cases := []struct {
		name string
		edit func(map[string]any)
	}{
		{"stanza byte", flip(len(ageMagic) + 40)},
		{"header mac", flip(len(slot.Sealed) - 16 - 50)},
		{"payload byte", flip(len(slot.Sealed) - 20)},
		{"last byte", flip(len(slot.Sealed) - 1)},
		{"magic", flip(0)},
		{"truncated", func(m map[string]any) { m["sealed"] = slot.Sealed[:len(slot.Sealed)-1] }},
		{"too short", func(m map[string]any) { m["sealed"] = slot.Sealed[:40] }},
		{"too long", func(m map[string]any) { m["sealed"] = append(bytes.Clone(slot.Sealed), make([]byte, 9000)...) }},
		{"no recipient", func(m map[string]any) { delete(m, "recipient") }},
		{"bad recipient", func(m map[string]any) { m["recipient"] = "age1notakey" }},
		{"secret key as recipient", func(m map[string]any) { m["recipient"] = k.Identity() }},
		{"kdf added", func(m map[string]any) {
			m["kdf"] = map[string]any{"name": "argon2id", "time": 1, "memory_kib": 8, "threads": 1, "salt": make([]byte, 32)}
		}},
		{"type passphrase", func(m map[string]any) { m["type"] = "passphrase" }},
		{"version", func(m map[string]any) { m["version"] = 2 }},
		{"sealed is another key's", func(m map[string]any) {
			o, err := NewEscrowSlot(mk, other.Recipient, time.Now(), "h")
			if err != nil {
				t.Fatal(err)
			}
			m["sealed"] = o.Sealed
		}},
	}
	for _, c := range cases {
		tb := tamperSlot(t, b, c.edit)
		s, err := ParseSlot(tb, "keys/t")
		if err != nil {
			if !strings.Contains(err.Error(), "keys/t") {
				t.Errorf("%s: error %q does not name the slot", c.name, err)
			}
			if strings.Contains(err.Error(), k.Identity()) {
				t.Errorf("%s: error quotes the identity", c.name)
			}
			continue
		}
		got, err := s.OpenWithIdentity(ids...)
		if err == nil {
			t.Errorf("%s: tampered slot opened (key equal: %v)", c.name, got.Equal(mk))
			continue
		}
		if !strings.Contains(err.Error(), "damaged") && !errors.Is(err, ErrEscrowIdentity) {
			t.Errorf("%s: unclear error %q", c.name, err)
		}
	}
	// Harmless edits keep the slot usable.
	tb := tamperSlot(t, b, func(m map[string]any) { m["note"] = "hello"; m["host"] = "other" })
	s, err := ParseSlot(tb, "keys/t")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.OpenWithIdentity(ids...); err != nil || !got.Equal(mk) {
		t.Fatalf("slot with a new note: %v", err)
	}
}

// An age file sealed to the escrow key that is not a Coffer key slot (no
// prefix, or the wrong length) is refused.
func TestEscrowSlotForeignPayload(t *testing.T) {
	k, _ := testEscrowKeys(t)
	rcpt, err := ParseEscrowRecipient(k.Recipient)
	if err != nil {
		t.Fatal(err)
	}
	for _, payload := range [][]byte{
		make([]byte, 32),
		append([]byte(escrowPrefix), make([]byte, 31)...),
		append([]byte(escrowPrefix), make([]byte, 33)...),
		append([]byte("coffer key slot v1 passphrase\x00"), make([]byte, 32)...),
	} {
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, rcpt)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(payload)
		w.Close()
		s := &Slot{Version: 1, Type: SlotEscrowAge, Recipient: k.Recipient, Sealed: buf.Bytes()}
		if _, err := s.OpenWithIdentity(identities(t, k)...); err == nil || !strings.Contains(err.Error(), "not a Coffer master key") {
			t.Errorf("payload of %d bytes: %v", len(payload), err)
		}
	}
}

func TestParseEscrowRecipient(t *testing.T) {
	k, _ := testEscrowKeys(t)
	if _, err := ParseEscrowRecipient(k.Recipient); err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{"", "age1", "age1pq1xyz", k.Identity(), "ssh-ed25519 AAAA", strings.Repeat("a", 5000)} {
		_, err := ParseEscrowRecipient(in)
		if err == nil {
			t.Errorf("ParseEscrowRecipient(%.20q) succeeded", in)
		} else if len(in) > 12 && strings.Contains(err.Error(), in) {
			t.Errorf("error quotes its input: %v", err)
		}
	}
	if s := (*k).String(); strings.Contains(s, k.Identity()) {
		t.Fatal("String prints the identity")
	}
	if _, err := ParseEscrowIdentities(strings.NewReader("nothing here\n")); err == nil {
		t.Fatal("parsed a bad identity file")
	}
}
