package vaultapi

import (
	"strings"
	"testing"
)

// FuzzParseSeedLostPacks: a stored lost list parses or is refused, never
// panics; an accepted one names its seed and only valid, sorted pack ids.
func FuzzParseSeedLostPacks(f *testing.F) {
	id := strings.Repeat("ab", 32)
	p1, p2 := strings.Repeat("01", 32), strings.Repeat("fe", 32)
	for _, s := range []string{
		`{"seed":"` + id + `","packs":[]}`,
		`{"seed":"` + id + `","packs":["` + p1 + `","` + p2 + `"]}`,
		`{"seed":"` + id + `","packs":["` + p2 + `","` + p1 + `"]}`,
		`{"seed":"` + id + `","packs":["` + p1 + `","` + p1 + `"]}`,
		`{"seed":"` + id + `"}`, `{"seed":"x","packs":[]}`, `{"seed":"` + id + `","packs":["zz"],"more":1}`, `[]`, ``,
		`{"seed":"` + id + `","packs":["` + strings.ToUpper(p1) + `"]}`, `{"seed":"` + id + `","packs":[]} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		lost, err := ParseSeedLostPacks(b, id)
		if err != nil {
			return
		}
		if lost.Seed != id || lost.Packs == nil {
			t.Fatalf("accepted %+v", lost)
		}
		for i, p := range lost.Packs {
			if !ValidSHA256Hex(p) || i > 0 && lost.Packs[i-1] >= p {
				t.Fatalf("accepted pack %q in %+v", p, lost.Packs)
			}
		}
	})
}

// TestParseSeedLostPacks: each kind of bad list is refused with a message
// saying what is wrong.
func TestParseSeedLostPacks(t *testing.T) {
	id := strings.Repeat("ab", 32)
	p1, p2 := strings.Repeat("01", 32), strings.Repeat("fe", 32)
	lost, err := ParseSeedLostPacks([]byte(`{"seed":"`+id+`","packs":["`+p1+`","`+p2+`"]}`), id)
	if err != nil || len(lost.Packs) != 2 {
		t.Fatalf("a good list: %+v %v", lost, err)
	}
	for _, c := range []struct{ body, want string }{
		{`{"seed":"` + strings.Repeat("cd", 32) + `","packs":[]}`, "is the list of seed"},
		{`{"seed":"` + id + `"}`, `no "packs" array`},
		{`{"seed":"` + id + `","packs":["` + p2 + `","` + p1 + `"]}`, "out of order"},
		{`{"seed":"` + id + `","packs":["` + p1 + `","` + p1 + `"]}`, "listed twice"},
		{`{"seed":"` + id + `","packs":["x"]}`, "not 64 lower-case hex digits"},
		{`{"seed":"` + id + `","packs":[],"more":1}`, "unknown field"},
		{`{"seed":"` + id + `","packs":[]}{}`, "data after"},
	} {
		if _, err := ParseSeedLostPacks([]byte(c.body), id); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.body, err, c.want)
		}
	}
}
