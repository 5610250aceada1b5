package jobs

import (
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// FuzzParseLostPacks: a stored lost list parses or is refused, never
// panics; an accepted one names its seed and only valid, sorted pack ids.
func FuzzParseLostPacks(f *testing.F) {
	id := strings.Repeat("ab", 32)
	p1, p2 := strings.Repeat("01", 32), strings.Repeat("fe", 32)
	for _, s := range []string{
		`{"seed":"` + id + `","packs":[]}`,
		`{"seed":"` + id + `","packs":["` + p1 + `","` + p2 + `"]}`,
		`{"seed":"` + id + `","packs":["` + p2 + `","` + p1 + `"]}`,
		`{"seed":"` + id + `","packs":["` + p1 + `","` + p1 + `"]}`,
		`{"seed":"` + id + `"}`, `{"seed":"x","packs":[]}`, `{"seed":"` + id + `","packs":["zz"],"more":1}`, `[]`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		lost, err := ParseLostPacks(b, id)
		if err != nil {
			return
		}
		if lost.Seed != id || lost.Packs == nil {
			t.Fatalf("accepted %+v", lost)
		}
		for i, p := range lost.Packs {
			if !vaultapi.ValidSHA256Hex(p) || i > 0 && lost.Packs[i-1] >= p {
				t.Fatalf("accepted pack %q in %+v", p, lost.Packs)
			}
		}
	})
}
