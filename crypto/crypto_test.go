package crypto

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func init() { os.Setenv("COFFER_INSECURE_TEST_KDF", "1") }

// fixedMaster returns a master key whose bytes are first, first+1, ...
func fixedMaster(t testing.TB, first byte) *MasterKey {
	t.Helper()
	b := make([]byte, KeySize)
	for i := range b {
		b[i] = first + byte(i)
	}
	mk, err := masterKeyFromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return mk
}

func testSealer(t testing.TB) *Sealer {
	t.Helper()
	s, err := NewSealer(bytes.Repeat([]byte{0x42}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNewSealerRejectsBadKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := NewSealer(make([]byte, n)); err == nil {
			t.Errorf("NewSealer accepted a %d-byte key", n)
		}
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := testSealer(t)
	ad := []byte("associated")
	for _, n := range []int{0, 1, 15, 16, 17, 1000, 64 << 10} {
		plain := make([]byte, n)
		for i := range plain {
			plain[i] = byte(i*7 + n)
		}
		sealed := s.Seal(nil, plain, ad)
		if len(sealed) != n+Overhead {
			t.Fatalf("sealed %d bytes into %d, want %d", n, len(sealed), n+Overhead)
		}
		if n >= 16 && bytes.Contains(sealed, plain[:16]) {
			t.Fatalf("sealed output contains the plaintext")
		}
		for name, open := range openers(s) {
			got, err := open(bytes.Clone(sealed), ad, "test")
			if err != nil {
				t.Fatalf("%s %d bytes: %v", name, n, err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatalf("%s: round trip of %d bytes changed the plaintext", name, n)
			}
		}
	}
}

// openers returns both ways of opening a sealed object.
func openers(s *Sealer) map[string]func(sealed, ad []byte, what string) ([]byte, error) {
	return map[string]func(sealed, ad []byte, what string) ([]byte, error){
		"Open": func(sealed, ad []byte, what string) ([]byte, error) { return s.Open(nil, sealed, ad, what) },
		"OpenInPlace": func(sealed, ad []byte, what string) ([]byte, error) {
			out, err := s.OpenInPlace(sealed, ad, what)
			if err == nil && len(out) > 0 && &out[0] != &sealed[xaesNonceSize] {
				return nil, fmt.Errorf("OpenInPlace did not decrypt in place")
			}
			return out, err
		},
	}
}

func TestSealAppendsToDst(t *testing.T) {
	s := testSealer(t)
	prefix := []byte("prefix:")
	dst := append(make([]byte, 0, 100), prefix...)
	sealed := s.Seal(dst, []byte("hello"), nil)
	if !bytes.HasPrefix(sealed, prefix) {
		t.Fatalf("Seal did not keep dst: %q", sealed)
	}
	plain, err := s.Open([]byte("x:"), sealed[len(prefix):], nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	if string(plain) != "x:hello" {
		t.Fatalf("Open appended %q, want x:hello", plain)
	}
	// Sealing into a short buffer must not disturb what dst holds either.
	small := []byte("ab")
	sealed = s.Seal(small, []byte("hello"), nil)
	if string(sealed[:2]) != "ab" || len(sealed) != 2+5+Overhead {
		t.Fatalf("Seal into a full slice: %q", sealed)
	}
}

func TestSealUsesFreshNonces(t *testing.T) {
	s := testSealer(t)
	a := s.Seal(nil, []byte("same"), nil)
	b := s.Seal(nil, []byte("same"), nil)
	if bytes.Equal(a[:24], b[:24]) || bytes.Equal(a, b) {
		t.Fatal("two seals of the same plaintext share a nonce")
	}
}

func TestOpenDetectsEveryFlippedBit(t *testing.T) {
	s := testSealer(t)
	ad := []byte("ad")
	sealed := s.Seal(nil, []byte("the quick brown fox"), ad)
	for i := range sealed {
		for bit := 0; bit < 8; bit++ {
			for name, open := range openers(s) {
				c := bytes.Clone(sealed)
				c[i] ^= 1 << bit
				if _, err := open(c, ad, "obj"); !errors.Is(err, ErrAuth) {
					t.Fatalf("%s: byte %d bit %d flipped: err = %v, want ErrAuth", name, i, bit, err)
				}
			}
		}
	}
}

func TestOpenFailures(t *testing.T) {
	s := testSealer(t)
	sealed := s.Seal(nil, []byte("payload"), []byte("right"))
	other, err := NewSealer(bytes.Repeat([]byte{0x43}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		s      *Sealer
		sealed []byte
		ad     []byte
	}{
		{"wrong AD", s, sealed, []byte("wrong")},
		{"missing AD", s, sealed, nil},
		{"wrong key", other, sealed, []byte("right")},
		{"truncated", s, sealed[:len(sealed)-1], []byte("right")},
		{"extended", s, append(bytes.Clone(sealed), 0), []byte("right")},
		{"shorter than overhead", s, sealed[:Overhead-1], []byte("right")},
		{"empty", s, nil, []byte("right")},
	}
	for _, c := range cases {
		for name, open := range openers(c.s) {
			_, err := open(bytes.Clone(c.sealed), c.ad, "thing-name")
			if !errors.Is(err, ErrAuth) {
				t.Errorf("%s, %s: err = %v, want ErrAuth", name, c.name, err)
				continue
			}
			if !strings.Contains(err.Error(), "thing-name") {
				t.Errorf("%s, %s: error %q does not name the object", name, c.name, err)
			}
		}
	}
}

func TestPassphraseSlot(t *testing.T) {
	mk := fixedMaster(t, 1)
	now := time.Date(2026, 11, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	slot, err := NewPassphraseSlot(mk, []byte("correct horse"), DefaultKDF(), now, "host1")
	if err != nil {
		t.Fatal(err)
	}
	if slot.Type != SlotPassphrase || slot.Version != SlotVersion || slot.Host != "host1" {
		t.Fatalf("slot fields: %+v", slot)
	}
	if !slot.Created.Equal(now) || slot.Created.Location() != time.UTC {
		t.Fatalf("slot created %v, want %v in UTC", slot.Created, now)
	}
	if len(slot.KDF.Salt) != 32 {
		t.Fatalf("salt is %d bytes", len(slot.KDF.Salt))
	}
	b, err := slot.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, mk.raw[:]) || strings.Contains(string(b), hex.EncodeToString(mk.raw[:])) {
		t.Fatal("the slot holds the master key in the clear")
	}
	parsed, err := ParseSlot(b, "keys/x")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parsed.OpenWithPassphrase([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(mk) {
		t.Fatal("slot opened to another master key")
	}
	for _, wrong := range []string{"correct horsE", "correct horse ", "", "x"} {
		if _, err := parsed.OpenWithPassphrase([]byte(wrong)); !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("passphrase %q: err = %v, want ErrWrongPassphrase", wrong, err)
		}
	}
	// Two slots for the same key and passphrase differ (salt and nonce).
	slot2, err := NewPassphraseSlot(mk, []byte("correct horse"), DefaultKDF(), now, "host1")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(slot.KDF.Salt, slot2.KDF.Salt) || bytes.Equal(slot.Sealed, slot2.Sealed) {
		t.Fatal("two slots share a salt or sealed key")
	}
}

func TestNewPassphraseSlotRejects(t *testing.T) {
	mk := fixedMaster(t, 1)
	now := time.Now()
	if _, err := NewPassphraseSlot(mk, nil, DefaultKDF(), now, ""); err == nil {
		t.Error("empty passphrase accepted")
	}
	bad := []KDFParams{
		{Name: "scrypt", Time: 1, MemoryKiB: 64, Threads: 1},
		{Name: "argon2id", Time: 0, MemoryKiB: 64, Threads: 1},
		{Name: "argon2id", Time: 1, MemoryKiB: 7, Threads: 1},
		{Name: "argon2id", Time: 1, MemoryKiB: 64, Threads: 0},
		{Name: "argon2id", Time: 1, MemoryKiB: 64, Threads: 1, Salt: make([]byte, 16)},
	}
	for _, p := range bad {
		if _, err := NewPassphraseSlot(mk, []byte("pw"), p, now, ""); err == nil {
			t.Errorf("KDF params %+v accepted", p)
		}
	}
}

func TestDefaultKDFInsecureOnlyWhenAsked(t *testing.T) {
	p := DefaultKDF()
	if p.MemoryKiB != 64 || p.Time != 1 {
		t.Fatalf("COFFER_INSECURE_TEST_KDF=1 gives %+v", p)
	}
	t.Setenv("COFFER_INSECURE_TEST_KDF", "")
	p = DefaultKDF()
	if p.Name != "argon2id" || p.Time < 3 || p.MemoryKiB < 64<<10 || p.Threads < 1 {
		t.Fatalf("default KDF params %+v are weaker than documented", p)
	}
}

// tamperSlot rewrites one field of a slot's JSON.
func tamperSlot(t *testing.T, b []byte, edit func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestTamperedSlotRejectedOrFailsAuth(t *testing.T) {
	mk := fixedMaster(t, 9)
	slot, err := NewPassphraseSlot(mk, []byte("pw"), DefaultKDF(), time.Now(), "h")
	if err != nil {
		t.Fatal(err)
	}
	b, err := slot.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	otherSalt := bytes.Repeat([]byte{7}, 32)
	kdf := func(k string, v any) func(map[string]any) {
		return func(m map[string]any) { m["kdf"].(map[string]any)[k] = v }
	}
	cases := []struct {
		name string
		edit func(map[string]any)
	}{
		{"time", kdf("time", 2)},
		{"memory", kdf("memory_kib", 128)},
		{"threads", kdf("threads", 2)},
		{"salt", kdf("salt", otherSalt)},
		{"name", kdf("name", "argon2i")},
		{"time out of range", kdf("time", 0)},
		{"time over the limit", kdf("time", 1<<20)},
		{"memory too large", kdf("memory_kib", 4<<20+1)},
		{"memory too small", kdf("memory_kib", 7)},
		{"threads zero", kdf("threads", 0)},
		{"threads overflow", kdf("threads", 256)},
		{"short salt", kdf("salt", make([]byte, 31))},
		{"no salt", func(m map[string]any) { delete(m["kdf"].(map[string]any), "salt") }},
		{"no kdf", func(m map[string]any) { delete(m, "kdf") }},
		{"version", func(m map[string]any) { m["version"] = 2 }},
		{"type", func(m map[string]any) { m["type"] = "escrow" }},
		{"sealed flipped", func(m map[string]any) {
			s := bytes.Clone(slot.Sealed)
			s[30] ^= 1
			m["sealed"] = s
		}},
		{"sealed short", func(m map[string]any) { m["sealed"] = slot.Sealed[:len(slot.Sealed)-1] }},
		{"sealed is another slot's", func(m map[string]any) {
			other, err := NewPassphraseSlot(mk, []byte("pw"), DefaultKDF(), time.Now(), "h")
			if err != nil {
				t.Fatal(err)
			}
			m["sealed"] = other.Sealed
		}},
	}
	for _, c := range cases {
		tb := tamperSlot(t, b, c.edit)
		s, err := ParseSlot(tb, "keys/t")
		if err != nil {
			if !strings.Contains(err.Error(), "keys/t") {
				t.Errorf("%s: error %q does not name the slot", c.name, err)
			}
			continue
		}
		got, err := s.OpenWithPassphrase([]byte("pw"))
		if DefaultKDFLimit.Check(*s.KDF) != nil {
			// Valid for the format (RFC 9106 sets no upper bound), but
			// over the agent's limit: refused without running argon2id.
			if err == nil || !strings.Contains(err.Error(), "not tried") {
				t.Errorf("%s: slot over the KDF limit: %v", c.name, err)
			}
			continue
		}
		if !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("%s: tampered slot opened (key equal: %v, err %v)", c.name, got != nil && got.Equal(mk), err)
		}
	}
	// Harmless edits keep the slot usable.
	tb := tamperSlot(t, b, func(m map[string]any) { m["note"] = "hello"; m["host"] = "other" })
	s, err := ParseSlot(tb, "keys/t")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.OpenWithPassphrase([]byte("pw")); err != nil || !got.Equal(mk) {
		t.Fatalf("slot with a new note: %v", err)
	}
}

func TestParseSlotRejects(t *testing.T) {
	for _, in := range []string{"", "null", "{}", "[]", "{", `{"version":1,"type":"passphrase"}`, `"x"`} {
		if _, err := ParseSlot([]byte(in), "k"); err == nil {
			t.Errorf("ParseSlot(%q) succeeded", in)
		}
	}
}

func TestOpenWithPassphraseNotAPassphraseSlot(t *testing.T) {
	s := &Slot{Version: 1, Type: "escrow", Sealed: make([]byte, KeySize+Overhead)}
	if _, err := s.OpenWithPassphrase([]byte("x")); err == nil {
		t.Fatal("opened a non-passphrase slot with a passphrase")
	}
}

func TestSubkeysDeterministicAndDistinct(t *testing.T) {
	k1, err := Derive(fixedMaster(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	k1b, err := Derive(fixedMaster(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Derive(fixedMaster(t, 2))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("some chunk")
	if k1.NewIDHasher().Sum(data) != k1b.NewIDHasher().Sum(data) {
		t.Error("chunk IDs differ for the same master key")
	}
	if k1.NewIDHasher().Sum(data) == k2.NewIDHasher().Sum(data) {
		t.Error("chunk IDs equal for different master keys")
	}
	if !bytes.Equal(k1.ConfigMAC(data), k1b.ConfigMAC(data)) {
		t.Error("config MACs differ for the same master key")
	}
	if bytes.Equal(k1.ConfigMAC(data), k2.ConfigMAC(data)) {
		t.Error("config MACs equal for different master keys")
	}
	// Domain separation: the ID key and the config key are different keys.
	id := k1.NewIDHasher().Sum(data)
	if bytes.Equal(id[:], k1.ConfigMAC(data)) {
		t.Error("the chunk ID key and the config MAC key are the same")
	}
	if !k1.CheckConfigMAC(data, k1b.ConfigMAC(data)) || k1.CheckConfigMAC(data, k2.ConfigMAC(data)) {
		t.Error("CheckConfigMAC")
	}
	mac := k1.ConfigMAC(data)
	mac[0] ^= 1
	if k1.CheckConfigMAC(data, mac) || k1.CheckConfigMAC(data, mac[:31]) || k1.CheckConfigMAC(append(data, 0), k1.ConfigMAC(data)) {
		t.Error("CheckConfigMAC accepted a wrong MAC")
	}
	// The data sealer is deterministic per master key too.
	sealed := k1.Data().Seal(nil, data, nil)
	if _, err := k1b.Data().Open(nil, sealed, nil, "x"); err != nil {
		t.Errorf("same master key, other Keys: %v", err)
	}
	if _, err := k2.Data().Open(nil, sealed, nil, "x"); !errors.Is(err, ErrAuth) {
		t.Errorf("other master key opened a blob: %v", err)
	}
	if k1.Master() == nil || !k1.Master().Equal(fixedMaster(t, 1)) {
		t.Error("Master() is not the key derived from")
	}
	// The IDHasher resets between sums.
	h := k1.NewIDHasher()
	a := h.Sum([]byte("a"))
	_ = h.Sum([]byte("bbbb"))
	if h.Sum([]byte("a")) != a {
		t.Error("IDHasher.Sum depends on earlier sums")
	}
}

// TestSubkeyVectors pins the derivations: they are part of the format, and a
// change makes every existing repository unreadable.
func TestSubkeyVectors(t *testing.T) {
	k, err := Derive(fixedMaster(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	id := k.NewIDHasher().Sum([]byte("coffer"))
	if got, want := id.String(), "0c3306c5a41d6e23665be3b8e1c530d2869a46977256366ca13e81ae956f025d"; got != want {
		t.Errorf("chunk ID vector: got %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(k.ConfigMAC([]byte("coffer"))), "f17e6f47ac14504a0778c448cbf0547425da2ffc7eceab9c20635b0d70666348"; got != want {
		t.Errorf("config MAC vector: got %s, want %s", got, want)
	}
	pol, err := k.Polynomial()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := uint64(pol), uint64(0x27b72331d88a03); got != want {
		t.Errorf("polynomial vector: got %#x, want %#x", got, want)
	}
}

func TestPolynomial(t *testing.T) {
	seen := map[uint64]bool{}
	for i := byte(0); i < 8; i++ {
		k, err := Derive(fixedMaster(t, i*32))
		if err != nil {
			t.Fatal(err)
		}
		p, err := k.Polynomial()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Derive(fixedMaster(t, i*32))
		if err != nil {
			t.Fatal(err)
		}
		p2, err := again.Polynomial()
		if err != nil {
			t.Fatal(err)
		}
		if p != p2 {
			t.Fatalf("polynomial not deterministic: %v vs %v", p, p2)
		}
		if !p.Irreducible() {
			t.Fatalf("polynomial %v is reducible", p)
		}
		if p.Deg() != 53 {
			t.Fatalf("polynomial %v has degree %d, want 53", p, p.Deg())
		}
		seen[uint64(p)] = true
	}
	if len(seen) != 8 {
		t.Fatalf("8 master keys gave %d distinct polynomials", len(seen))
	}
}

func TestMasterKeyNeverPrinted(t *testing.T) {
	mk := fixedMaster(t, 0xa0)
	raw := mk.raw
	// Forms that would show the key bytes in decimal, hex or as a string.
	leaks := []string{
		hex.EncodeToString(raw[:]),
		fmt.Sprint(raw[:4]),
		fmt.Sprintf("%#v", raw[:4]),
		strings.Trim(fmt.Sprint(raw[:4]), "[]"),
		fmt.Sprintf("%x", raw[:4]),
		fmt.Sprintf("%#x, %#x", raw[0], raw[1]),
	}
	type holder struct {
		K MasterKey
		P *MasterKey
	}
	outs := map[string]string{
		"String":     mk.String(),
		"GoString":   mk.GoString(),
		"%v ptr":     fmt.Sprintf("%v", mk),
		"%+v ptr":    fmt.Sprintf("%+v", mk),
		"%#v ptr":    fmt.Sprintf("%#v", mk),
		"%s ptr":     fmt.Sprintf("%s", mk), //lint:ignore S1025 the %s verb itself is under test
		"%v value":   fmt.Sprintf("%v", *mk),
		"%+v value":  fmt.Sprintf("%+v", *mk),
		"%#v value":  fmt.Sprintf("%#v", *mk),
		"%v holder":  fmt.Sprintf("%v", holder{*mk, mk}),
		"%+v holder": fmt.Sprintf("%+v", holder{*mk, mk}),
		"%#v holder": fmt.Sprintf("%#v", holder{*mk, mk}),
		"%v slice":   fmt.Sprintf("%v", []*MasterKey{mk}),
		"Sprint":     fmt.Sprint(mk),
		"Sprintln":   fmt.Sprintln(*mk),
	}
	for form, out := range outs {
		for _, l := range leaks {
			if strings.Contains(out, l) {
				t.Errorf("%s prints key bytes: %q", form, out)
				break
			}
		}
		if !strings.Contains(out, "redacted") {
			t.Errorf("%s = %q, want it to say redacted", form, out)
		}
	}
}

func TestMasterKeys(t *testing.T) {
	a, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	if a.Equal(b) || !a.Equal(a) {
		t.Fatal("Equal")
	}
	if a.raw == [KeySize]byte{} {
		t.Fatal("random master key is all zeros")
	}
	if _, err := masterKeyFromBytes(make([]byte, 31)); err == nil {
		t.Fatal("31-byte master key accepted")
	}
}

func TestIDString(t *testing.T) {
	var id ID
	id[0], id[31] = 0xab, 0x01
	s := id.String()
	if len(s) != 64 || !strings.HasPrefix(s, "ab00") || !strings.HasSuffix(s, "01") {
		t.Fatalf("ID.String() = %q", s)
	}
}
