package crypto

import (
	"errors"
	"strings"
	"testing"
)

func TestSigningKey(t *testing.T) {
	mk, err := NewMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := Derive(mk)
	k2, _ := Derive(mk)
	s1, s2 := k1.SigningKey(), k2.SigningKey()
	if s1.Public() != s2.Public() {
		t.Fatal("the same master key derives two signing keys")
	}
	other, _ := NewMasterKey()
	ko, _ := Derive(other)
	if ko.SigningKey().Public() == s1.Public() {
		t.Fatal("two master keys derive the same signing key")
	}
	if !strings.HasPrefix(s1.Public(), "ed25519:") || len(s1.Public()) != 8+64 {
		t.Fatalf("public key text %q", s1.Public())
	}
	msg := []byte("manifest bytes")
	sig := s1.Sign("coffer seed manifest v1", msg)
	if err := VerifySignature(s1.Public(), "coffer seed manifest v1", msg, sig); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]func() error{
		"changed message": func() error {
			return VerifySignature(s1.Public(), "coffer seed manifest v1", []byte("manifest bytez"), sig)
		},
		"other domain":    func() error { return VerifySignature(s1.Public(), "another purpose", msg, sig) },
		"other key":       func() error { return VerifySignature(ko.SigningKey().Public(), "coffer seed manifest v1", msg, sig) },
		"short signature": func() error { return VerifySignature(s1.Public(), "coffer seed manifest v1", msg, sig[:10]) },
	} {
		if err := c(); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", name, err)
		}
	}
	for _, bad := range []string{"", "ed25519:", "ed25519:" + strings.Repeat("G", 64), "ed25519:" + strings.Repeat("A", 64), strings.Repeat("a", 72)} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
	}
	if strings.Contains(s1.String()+s1.GoString(), "ed25519") {
		t.Fatal("the signing key prints")
	}
	if len(SigningKeyFingerprint(s1.Public())) != 16 {
		t.Fatal("fingerprint length")
	}
}
