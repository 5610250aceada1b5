package vaultapi

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func validReceipt() *Receipt {
	return &Receipt{Version: 1, Snapshot: strings.Repeat("a", 64), Name: "web01", Time: time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC),
		Source: "xen", Disks: []ReceiptDisk{{Size: 1 << 30, DataBytes: 1 << 20}}, Packs: []string{strings.Repeat("1", 64), strings.Repeat("2", 64)}}
}

// TestParseReceipt: a valid receipt round-trips; every broken rule is an
// error wrapping ErrBadReceipt that says which.
func TestParseReceipt(t *testing.T) {
	b, err := validReceipt().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ParseReceipt(b)
	if err != nil || rc.Name != "web01" || len(rc.Packs) != 2 {
		t.Fatalf("round trip: %+v %v", rc, err)
	}
	for what, edit := range map[string]func(r *Receipt){
		"version":       func(r *Receipt) { r.Version = 2 },
		"snapshot":      func(r *Receipt) { r.Snapshot = "ABC" },
		"source":        func(r *Receipt) { r.Source = "vmware" },
		"time":          func(r *Receipt) { r.Time = time.Time{} },
		"disks":         func(r *Receipt) { r.Disks = nil },
		"data_bytes":    func(r *Receipt) { r.Disks[0].DataBytes = r.Disks[0].Size + 1 },
		"pack":          func(r *Receipt) { r.Packs[0] = "zz" },
		"sorted":        func(r *Receipt) { r.Packs[0], r.Packs[1] = r.Packs[1], r.Packs[0] },
		"name":          func(r *Receipt) { r.Name = "a\x1bb" },
		"seed":          func(r *Receipt) { r.Seed = "nothex" },
		"empty name":    func(r *Receipt) { r.Name = "" },
		"negative size": func(r *Receipt) { r.Disks[0].Size = -1 },
	} {
		r := validReceipt()
		edit(r)
		if err := r.Validate(); !errors.Is(err, ErrBadReceipt) {
			t.Errorf("%s: %v; want ErrBadReceipt", what, err)
		}
	}
	for _, bad := range []string{`{"version":1}x`, `{"version":1,"unknown":2}`, `[]`, ``} {
		if _, err := ParseReceipt([]byte(bad)); !errors.Is(err, ErrBadReceipt) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// FuzzParseReceipt: whatever the bytes, ParseReceipt returns a receipt
// that validates and marshals back to what parses the same, or an error;
// never a panic.
func FuzzParseReceipt(f *testing.F) {
	b, _ := validReceipt().Marshal()
	f.Add(b)
	f.Add([]byte(`{"version":1,"snapshot":"` + strings.Repeat("a", 64) + `","name":"x","time":"2026-01-01T00:00:00Z","source":"image","disks":[{"size":0,"data_bytes":0}],"packs":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rc, err := ParseReceipt(data)
		if err != nil {
			if !errors.Is(err, ErrBadReceipt) {
				t.Fatalf("error %v does not wrap ErrBadReceipt", err)
			}
			return
		}
		out, err := rc.Marshal()
		if err != nil {
			t.Fatalf("a parsed receipt does not marshal: %v", err)
		}
		again, err := ParseReceipt(out)
		if err != nil {
			t.Fatalf("a marshalled receipt does not parse: %v", err)
		}
		if b2, _ := again.Marshal(); !bytes.Equal(b2, out) {
			t.Fatalf("not stable: %s then %s", out, b2)
		}
	})
}
