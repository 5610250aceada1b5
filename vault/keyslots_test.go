package vault

import (
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
)

// A tenant's repository holds at most MaxKeySlots key slots: slot N+1 is
// refused with 403 too_many_key_slots before its body is read, nothing is
// stored or counted, other kinds and other tenants are not affected.
func TestKeySlotLimit(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	for i := 1; i < MaxKeySlots; i++ { // the fixture stored one already
		kb := randBytes(100 + i)
		f.mustPut(f.credA, "keys/"+sha(kb), kb)
	}
	extra := randBytes(99)
	name := "keys/" + sha(extra)
	storedBefore := f.ledger.stored[tenantA]
	w := f.do(req{method: "PUT", target: "/v1/repo/" + name, cred: f.credA, body: extra})
	e := errorOf(t, w)
	if w.Code != http.StatusForbidden || e.Code != "too_many_key_slots" ||
		!strings.Contains(e.Message, "64 key slots") || !strings.Contains(e.Message, "cofferd tenant remove-key") {
		t.Fatalf("slot %d: %d %+v", MaxKeySlots+1, w.Code, e)
	}
	if _, err := f.data.Stat(t.Context(), objectKey(tenantA, name)); err == nil {
		t.Fatal("the refused slot was stored")
	}
	if f.ledger.stored[tenantA] != storedBefore {
		t.Fatal("the refused slot was counted")
	}
	n := 0
	_ = f.data.List(t.Context(), objectKey(tenantA, "keys/"), func(store.Info) error { n++; return nil })
	if n != MaxKeySlots {
		t.Fatalf("%d key slots stored, want %d", n, MaxKeySlots)
	}
	// Packs still go in; another tenant still adds slots.
	pb := randBytes(3000)
	f.mustPut(f.credA, packName(pb), pb)
	kb := randBytes(77)
	f.mustPut(f.credB, "keys/"+sha(kb), kb)
}
