package crypto

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func tinyKDF() KDFParams {
	return KDFParams{Name: "argon2id", Time: 1, MemoryKiB: 64, Threads: 1, Salt: bytes.Repeat([]byte{7}, 32)}
}

// The format's ranges are RFC 9106's: t >= 1, p >= 1, m >= 8p KiB, with
// no upper bound (that is the agent's limit, checked apart).
func TestKDFValidateFollowsRFC9106(t *testing.T) {
	salt := bytes.Repeat([]byte{1}, 32)
	good := []KDFParams{
		{Name: "argon2id", Time: 1, MemoryKiB: 8, Threads: 1, Salt: salt},
		{Name: "argon2id", Time: 1, MemoryKiB: 32, Threads: 4, Salt: salt},
		{Name: "argon2id", Time: 1, MemoryKiB: 8 * 255, Threads: 255, Salt: salt},
		{Name: "argon2id", Time: 100, MemoryKiB: 4 << 20, Threads: 1, Salt: salt},
		{Name: "argon2id", Time: 1 << 31, MemoryKiB: 1<<32 - 1, Threads: 16, Salt: salt},
	}
	for _, p := range good {
		if err := p.validate(); err != nil {
			t.Errorf("%+v: %v", p, err)
		}
	}
	bad := map[string]KDFParams{
		"8 KiB per lane": {Name: "argon2id", Time: 1, MemoryKiB: 31, Threads: 4, Salt: salt},
		"no lanes":       {Name: "argon2id", Time: 1, MemoryKiB: 64, Threads: 0, Salt: salt},
		"no passes":      {Name: "argon2id", Time: 0, MemoryKiB: 64, Threads: 1, Salt: salt},
		"16-byte salt":   {Name: "argon2id", Time: 1, MemoryKiB: 64, Threads: 1, Salt: salt[:16]},
		"argon2i":        {Name: "argon2i", Time: 1, MemoryKiB: 64, Threads: 1, Salt: salt},
	}
	for name, p := range bad {
		if err := p.validate(); err == nil {
			t.Errorf("%s: %+v accepted", name, p)
		}
	}
}

func TestKDFLimit(t *testing.T) {
	def := DefaultKDF()
	def.Salt = make([]byte, 32)
	t.Setenv("COFFER_INSECURE_TEST_KDF", "")
	real := DefaultKDF()
	for _, p := range []KDFParams{def, real} {
		if err := DefaultKDFLimit.Check(p); err != nil {
			t.Errorf("default parameters %+v over the default limit: %v", p, err)
		}
	}
	over := []KDFParams{
		{Name: "argon2id", Time: 20, MemoryKiB: 1 << 20, Threads: 4},    // the slot
		{Name: "argon2id", Time: 1, MemoryKiB: 256<<10 + 1, Threads: 4}, // memory
		{Name: "argon2id", Time: 17, MemoryKiB: 64 << 10, Threads: 4},   // work
	}
	for _, p := range over {
		err := DefaultKDFLimit.Check(p)
		if err == nil || !strings.Contains(err.Error(), "limit") {
			t.Errorf("%+v: err = %v, want over the limit", p, err)
		}
	}
	// A writer never makes a slot that agents would skip.
	mk := fixedMaster(t, 2)
	p := over[2]
	p.Salt = make([]byte, 32)
	if _, err := NewPassphraseSlot(mk, []byte("pw"), p, time.Now(), ""); err == nil {
		t.Error("NewPassphraseSlot wrote a slot over the limit")
	}
}

// New slots hash the NFC form of the passphrase, so a passphrase typed with
// a combining accent opens a slot made with the precomposed one; slots
// written before (no passphrase_form) still open with the bytes as given.
func TestPassphraseNormalisation(t *testing.T) {
	mk := fixedMaster(t, 4)
	composed, decomposed := "caf\u00e9 cr\u00e8me", "cafe\u0301 cre\u0300me"
	slot, err := NewPassphraseSlot(mk, []byte(decomposed), tinyKDF(), time.Now(), "h")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := slot.Marshal()
	if !strings.Contains(string(b), `"passphrase_form":"nfc"`) {
		t.Fatalf("new slot does not record its form: %s", b)
	}
	parsed, err := ParseSlot(b, "keys/n")
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{composed, decomposed} {
		if got, err := parsed.OpenWithPassphrase([]byte(pw)); err != nil || !got.Equal(mk) {
			t.Errorf("%q: %v", pw, err)
		}
	}

	// A slot of the earlier form: the bytes as given, nothing else.
	p := tinyKDF()
	s, _ := NewSealer(deriveSlotKey([]byte(decomposed), &p, FormRaw))
	legacy := &Slot{Version: 1, Type: SlotPassphrase, KDF: &p, Sealed: s.Seal(nil, mk.raw[:], slotAD(SlotPassphrase))}
	b, _ = legacy.Marshal()
	if strings.Contains(string(b), "passphrase_form") {
		t.Fatalf("a raw-form slot names a form: %s", b)
	}
	if parsed, err = ParseSlot(b, "keys/l"); err != nil {
		t.Fatal(err)
	}
	if got, err := parsed.OpenWithPassphrase([]byte(decomposed)); err != nil || !got.Equal(mk) {
		t.Errorf("legacy slot with its own bytes: %v", err)
	}
	if _, err := parsed.OpenWithPassphrase([]byte(composed)); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("legacy slot opened with other bytes: %v", err)
	}

	// An unknown form is refused, naming the slot.
	b = bytes.Replace(b, []byte(`"sealed"`), []byte(`"passphrase_form":"nfkc","sealed"`), 1)
	if _, err := ParseSlot(b, "keys/u"); err == nil || !strings.Contains(err.Error(), "keys/u") || !strings.Contains(err.Error(), "nfkc") {
		t.Errorf("unknown form: %v", err)
	}
}

func TestKDFRunsCounts(t *testing.T) {
	mk := fixedMaster(t, 5)
	before := KDFRuns()
	slot, err := NewPassphraseSlot(mk, []byte("pw"), tinyKDF(), time.Now(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slot.OpenWithPassphrase([]byte("pw")); err != nil {
		t.Fatal(err)
	}
	if got := KDFRuns() - before; got != 2 {
		t.Fatalf("KDFRuns grew by %d, want 2", got)
	}
}
