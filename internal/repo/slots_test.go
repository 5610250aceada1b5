package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/store"
)

// plantSlot stores a passphrase slot for r's master key with the given
// argon2id cost (tiny real parameters) and returns its name.
func plantSlot(t *testing.T, r *Repo, passphrase string, passes uint32, created time.Time) string {
	t.Helper()
	p := crypto.KDFParams{Name: "argon2id", Time: passes, MemoryKiB: 64, Threads: 1}
	s, err := crypto.NewPassphraseSlot(r.Keys().Master(), []byte(passphrase), p, created, "planter")
	if err != nil {
		t.Fatal(err)
	}
	return putSlot(t, r, s)
}

func putSlot(t *testing.T, r *Repo, s *crypto.Slot) string {
	t.Helper()
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	name, err := r.putContentNamed(ctx, KeysPrefix, b)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// A slot over the agent's KDF limit is skipped, not run, with a warning
// naming it. The limit is made tiny so that a slot with a tiny real cost
// is over it.
func TestOpenSkipsSlotOverKDFLimit(t *testing.T) {
	r, st, _ := initRepo(t)
	costly := plantSlot(t, r, "costly passphrase", 2, time.Now())
	tiny := crypto.KDFLimit{MaxMemoryKiB: 64, MaxWork: 64}

	var warnings []string
	before := crypto.KDFRuns()
	_, err := OpenWith(ctx, st, OpenOptions{Passphrase: []byte("costly passphrase"), Limit: tiny, Warn: func(s string) { warnings = append(warnings, s) }})
	if !errors.Is(err, crypto.ErrWrongPassphrase) || !strings.Contains(err.Error(), "1 key slot(s) over this agent's KDF limit were skipped") {
		t.Fatalf("err = %v; want a wrong passphrase naming the skipped slot", err)
	}
	if runs := crypto.KDFRuns() - before; runs != 1 {
		t.Fatalf("argon2id ran %d times; want once (the slot under the limit only)", runs)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], costly) || !strings.Contains(warnings[0], "skipped") || !strings.Contains(warnings[0], "host planter") {
		t.Fatalf("warnings = %q; want one naming %s and its claimed host", warnings, costly)
	}
	// Under the default limit the same slot opens.
	o, err := OpenWith(ctx, st, OpenOptions{Passphrase: []byte("costly passphrase")})
	if err != nil || o.OpenedSlot() != costly {
		t.Fatalf("default limit: %v, opened %q", err, o.OpenedSlot())
	}
}

// The slot (argon2id t=20, 1 GiB) costs nothing: the right
// passphrase opens the cheap slot first, and a wrong one skips it.
func TestPlantedExpensiveSlotStaysCheap(t *testing.T) {
	r, st, _ := initRepo(t)
	s, err := crypto.NewPassphraseSlot(r.Keys().Master(), []byte("x"), crypto.DefaultKDF(), time.Now(), "mallory")
	if err != nil {
		t.Fatal(err)
	}
	s.KDF.Time, s.KDF.MemoryKiB = 20, 1<<20
	b, _ := s.Marshal()
	if _, err := crypto.ParseSlot(b, "k"); err != nil {
		t.Fatalf("the format refuses the slot (%v); it must parse and be skipped", err)
	}
	expensive := putSlot(t, r, s)
	var warned string
	start := time.Now()
	for _, pw := range []string{pass, "wrong"} {
		_, err := OpenWith(ctx, st, OpenOptions{Passphrase: []byte(pw), Warn: func(s string) { warned += s }})
		if (pw == pass) != (err == nil) {
			t.Fatalf("%q: %v", pw, err)
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("two opens took %v", el)
	}
	if !strings.Contains(warned, expensive) || !strings.Contains(warned, "1048576 KiB") {
		t.Fatalf("warning %q does not name %s and its cost", warned, expensive)
	}
}

// Slots are tried in order: the preferred one, then cheapest, then newest.
func TestSlotOrder(t *testing.T) {
	r, st, _ := initRepo(t)
	first := slotNames(t, st)[0]
	costly := plantSlot(t, r, pass, 2, time.Now())
	newer := plantSlot(t, r, pass, 1, time.Now().Add(time.Hour))
	slots, err := ListSlots(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	order := func(prefer string) []string {
		try, _ := orderSlots(slots, prefer)
		var names []string
		for _, s := range try {
			names = append(names, s.Name)
		}
		return names
	}
	if got, want := order(""), []string{newer, first, costly}; !equalStrings(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
	if got, want := order(costly), []string{costly, newer, first}; !equalStrings(got, want) {
		t.Errorf("order preferring %s = %v, want %v", costly, got, want)
	}
	for _, prefer := range []string{costly, first, "keys/gone"} {
		ForgetUnlocked()
		before := crypto.KDFRuns()
		o, err := OpenWith(ctx, st, OpenOptions{Passphrase: []byte(pass), Prefer: prefer})
		if err != nil {
			t.Fatal(err)
		}
		want := prefer
		if prefer == "keys/gone" {
			want = newer
		}
		if o.OpenedSlot() != want || crypto.KDFRuns()-before != 1 {
			t.Errorf("prefer %s: opened %s with %d KDF runs; want %s with 1", prefer, o.OpenedSlot(), crypto.KDFRuns()-before, want)
		}
	}
}

func equalStrings(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// A slot of another repository that the same passphrase opens is passed
// over (its key does not authenticate the config); alone, it is named.
func TestForeignSlotDoesNotOpen(t *testing.T) {
	r, st, _ := initRepo(t)
	own := slotNames(t, st)[0]
	other, _, _ := initRepo(t)
	s, err := crypto.NewPassphraseSlot(other.Keys().Master(), []byte(pass), crypto.DefaultKDF(), time.Now().Add(time.Hour), "elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	foreign := putSlot(t, r, s)
	var warned string
	o, err := OpenWith(ctx, st, OpenOptions{Passphrase: []byte(pass), Warn: func(s string) { warned += s }})
	if !strings.Contains(warned, foreign) || !strings.Contains(warned, "does not authenticate") {
		t.Errorf("no warning naming the foreign slot: %q", warned)
	}
	if err != nil || o.OpenedSlot() != own || !o.Keys().Master().Equal(r.Keys().Master()) {
		t.Fatalf("with a foreign slot planted: %v (slot %s)", err, o.OpenedSlot())
	}
	ForgetUnlocked()
	if err := st.Delete(ctx, own); err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, st, []byte(pass))
	if err == nil || !strings.Contains(err.Error(), "config object failed authentication") || !strings.Contains(err.Error(), foreign) {
		t.Fatalf("only a foreign slot: %v", err)
	}
}

// A process pays the KDF once per repository and passphrase, while the
// slot that opened it exists.
func TestReopenRunsKDFOnce(t *testing.T) {
	_, st, _ := initRepo(t)
	ForgetUnlocked()
	o1, err := Open(ctx, st, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	before := crypto.KDFRuns()
	o2, err := Open(ctx, st, []byte(pass))
	if err != nil || crypto.KDFRuns() != before || o2.OpenedSlot() != o1.OpenedSlot() {
		t.Fatalf("second open: %v, %d KDF runs", err, crypto.KDFRuns()-before)
	}
	if _, err := Open(ctx, st, []byte("wrong")); !errors.Is(err, crypto.ErrWrongPassphrase) {
		t.Fatalf("a wrong passphrase after a right one: %v", err)
	}
	second, err := o1.AddPassphraseSlot(ctx, []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	if err := o1.RemoveSlot(ctx, o1.OpenedSlot()); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, st, []byte(pass)); !errors.Is(err, crypto.ErrWrongPassphrase) {
		t.Fatalf("the removed slot's passphrase still opens in this process: %v", err)
	}
	if o, err := Open(ctx, st, []byte("new")); err != nil || o.OpenedSlot() != second {
		t.Fatalf("new passphrase: %v", err)
	}
}

func TestOpenWithKey(t *testing.T) {
	r, st, dir := initRepo(t)
	slot := slotNames(t, st)[0]
	before := crypto.KDFRuns()
	o, err := OpenWithKey(ctx, st, r.Keys().Master(), slot)
	if err != nil || o.OpenedSlot() != slot || crypto.KDFRuns() != before {
		t.Fatalf("OpenWithKey: %v, slot %s, %d KDF runs", err, o.OpenedSlot(), crypto.KDFRuns()-before)
	}
	other, _, _ := initRepo(t)
	if _, err := OpenWithKey(ctx, st, other.Keys().Master(), slot); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("another repository's key: %v", err)
	}
	if _, err := OpenWithKey(ctx, st, r.Keys().Master(), KeysPrefix+strings.Repeat("0", 64)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a slot that is gone: %v", err)
	}
	flipByte(t, dir, ConfigName, 30, 1)
	if _, err := OpenWithKey(ctx, st, r.Keys().Master(), slot); err == nil {
		t.Fatal("a changed config opened")
	}
}

// The claims a slot carries are shown as claims.
func TestSlotClaims(t *testing.T) {
	r, st, _ := initRepo(t)
	name, err := r.AddPassphraseSlotClaimed(ctx, []byte("p2"), SlotClaim{Note: "key passwd", Credential: "0123456789abcdef01234567"})
	if err != nil {
		t.Fatal(err)
	}
	slots, _ := ListSlots(ctx, st)
	for _, s := range slots {
		if s.Name != name {
			continue
		}
		c := s.Claimed()
		if !strings.HasPrefix(c, "claims created ") || !strings.Contains(c, "credential 0123456789abcdef01234567") || !strings.Contains(c, "note key passwd") {
			t.Fatalf("Claimed() = %q", c)
		}
		b, _ := json.Marshal(s.Slot)
		if !bytes.Contains(b, []byte(`"credential":"0123456789abcdef01234567"`)) {
			t.Fatalf("slot JSON %s", b)
		}
		return
	}
	t.Fatal("slot not listed")
}
