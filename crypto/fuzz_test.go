package crypto

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

// FuzzParseSlot feeds arbitrary bytes to the key slot parser. It must never
// panic, and a slot it accepts must be valid and survive Marshal and a second
// parse unchanged. It never runs the KDF: a hostile slot may ask for 4 GiB.
func FuzzParseSlot(f *testing.F) {
	mk := fixedMaster(f, 3)
	p := KDFParams{Name: "argon2id", Time: 1, MemoryKiB: 64, Threads: 1, Salt: bytes.Repeat([]byte{5}, 32)}
	slot, err := NewPassphraseSlot(mk, []byte("pw"), p, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), "host")
	if err != nil {
		f.Fatal(err)
	}
	slot.Note = "note"
	b, err := slot.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"version":1,"type":"passphrase","kdf":{"name":"argon2id","time":1,"memory_kib":8,"threads":1,"salt":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},"sealed":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`))
	f.Add([]byte(`{"version":1,"type":"escrow"}`))
	ek, err := GenerateEscrowKey(true)
	if err != nil {
		f.Fatal(err)
	}
	es, err := NewEscrowSlot(mk, ek.Recipient, time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), "host")
	if err != nil {
		f.Fatal(err)
	}
	if b, err = es.Marshal(); err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"version":1,"type":"escrow-age","recipient":"age1pq1","sealed":""}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSlot(b, "keys/fuzz")
		if err != nil {
			if s != nil {
				t.Fatal("ParseSlot returned a slot and an error")
			}
			return
		}
		switch {
		case s.Version != SlotVersion:
			t.Fatalf("accepted slot %+v", s)
		case s.Type == SlotPassphrase:
			if s.KDF == nil || s.Recipient != "" || (s.Form != FormRaw && s.Form != FormNFC) {
				t.Fatalf("accepted slot %+v", s)
			}
			if err := s.KDF.validate(); err != nil {
				t.Fatalf("accepted slot with invalid KDF: %v", err)
			}
			if len(s.Sealed) != KeySize+Overhead {
				t.Fatalf("accepted slot with a %d-byte sealed key", len(s.Sealed))
			}
		case s.Type == SlotEscrowAge:
			if err := validateEscrowSlot(s); err != nil {
				t.Fatalf("accepted invalid escrow slot: %v", err)
			}
		default:
			t.Fatalf("accepted slot of type %q", s.Type)
		}
		out, err := s.Marshal()
		if err != nil {
			t.Fatalf("accepted slot does not marshal: %v", err)
		}
		s2, err := ParseSlot(out, "keys/fuzz")
		if err != nil {
			t.Fatalf("re-parsing a marshalled slot: %v\n%s", err, out)
		}
		out2, err := s2.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("slot changed across Marshal/ParseSlot:\n%s\n%s", out, out2)
		}
		if !reflect.DeepEqual(s.KDF, s2.KDF) || !bytes.Equal(s.Sealed, s2.Sealed) || s.Recipient != s2.Recipient || s.Form != s2.Form {
			t.Fatal("KDF or sealed key changed across Marshal/ParseSlot")
		}
	})
}
