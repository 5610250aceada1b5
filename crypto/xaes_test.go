package crypto

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// TestXAESVectors checks the C2SP XAES-256-GCM specification's test vectors.
func TestXAESVectors(t *testing.T) {
	for _, v := range []struct{ key, aad, ct string }{
		{"0101010101010101010101010101010101010101010101010101010101010101", "", "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271"},
		{"0303030303030303030303030303030303030303030303030303030303030303", "c2sp.org/XAES-256-GCM", "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d"},
	} {
		key, _ := hex.DecodeString(v.key)
		want, _ := hex.DecodeString(v.ct)
		x, err := newXAES(key)
		if err != nil {
			t.Fatal(err)
		}
		nonce := []byte("ABCDEFGHIJKLMNOPQRSTUVWX")
		got := x.seal(nil, nonce, []byte("XAES-256-GCM"), []byte(v.aad))
		if !bytes.Equal(got, want) {
			t.Errorf("key %s…: sealed %x, want %x", v.key[:8], got, want)
		}
		pt, err := x.open(nil, nonce, want, []byte(v.aad))
		if err != nil || string(pt) != "XAES-256-GCM" {
			t.Errorf("key %s…: open = %q, %v", v.key[:8], pt, err)
		}
	}
}

// TestSealInPlace: sealing into a slice with exactly enough capacity fills
// it without reallocating (the packer relies on it).
func TestSealInPlace(t *testing.T) {
	s, err := NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	pt := bytes.Repeat([]byte("x"), 1000)
	buf := make([]byte, 0, len(pt)+Overhead)
	out := s.Seal(buf, pt, nil)
	if &out[0] != &buf[:1][0] || len(out) != cap(buf) {
		t.Fatal("Seal reallocated a buffer that had room")
	}
	back, err := s.Open(nil, out, nil, "x")
	if err != nil || !bytes.Equal(back, pt) {
		t.Fatalf("round trip: %v", err)
	}
}
