package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// FuzzParseLostSnapshots: a kept list of a cancelled seed's snapshots
// (a file in the cache directory) parses or is refused, never panics; an
// accepted one is of its seed, with sorted snapshot IDs.
func FuzzParseLostSnapshots(f *testing.F) {
	id := strings.Repeat("ab", 32)
	s1, s2 := strings.Repeat("01", 32), strings.Repeat("fe", 32)
	for _, s := range []string{
		`{"seed":"` + id + `","snapshots":[]}`,
		`{"seed":"` + id + `","snapshots":["` + s1 + `","` + s2 + `"]}`,
		`{"seed":"` + id + `","snapshots":["` + s2 + `","` + s1 + `"]}`,
		`{"seed":"` + id + `"}`, `{"seed":"` + s1 + `","snapshots":[]}`, `{"seed":"` + id + `","snapshots":[],"x":1}`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseLostSnapshots(b, id)
		if err != nil {
			return
		}
		if s.Seed != id || s.Snapshots == nil {
			t.Fatalf("accepted %+v", s)
		}
		for i, sn := range s.Snapshots {
			if !vaultapi.ValidSHA256Hex(sn) || i > 0 && s.Snapshots[i-1] >= sn {
				t.Fatalf("accepted snapshot %q", sn)
			}
		}
	})
}

// A kept file that is damaged or another seed's is dropped with a
// warning and fetched again; a good one is used.
func TestKeptLostFiles(t *testing.T) {
	var errb strings.Builder
	g := &globals{stderr: &errb}
	dir := t.TempDir()
	id := strings.Repeat("ab", 32)
	g.keepLostSnapshots(dir, &lostSnapshots{Seed: id, Snapshots: []string{strings.Repeat("01", 32)}})
	if s := g.cachedLostSnapshots(dir, id); s == nil || len(s.Snapshots) != 1 {
		t.Fatalf("the kept list: %+v", s)
	}
	other := strings.Repeat("cd", 32)
	g.keepLostSnapshots(dir, &lostSnapshots{Seed: id, Snapshots: []string{}})
	if err := renameKept(dir, id+".snapshots", other+".snapshots"); err != nil {
		t.Fatal(err)
	}
	if s := g.cachedLostSnapshots(dir, other); s != nil || !strings.Contains(errb.String(), "removing the kept file") {
		t.Fatalf("another seed's list was used: %+v; %s", s, errb.String())
	}
	if s := g.cachedLostPacks(dir, other); s != nil {
		t.Fatalf("a missing lost list: %+v", s)
	}
}

func renameKept(dir, from, to string) error {
	return os.Rename(filepath.Join(dir, from), filepath.Join(dir, to))
}
