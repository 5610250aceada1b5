package seed

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeObjects writes n packs of random sizes (one empty), an index file,
// a snapshot and a receipt under root/objects, as an export would.
func writeObjects(t *testing.T, root string, n int) map[string][]byte {
	t.Helper()
	r := rand.New(rand.NewPCG(7, uint64(n)))
	out := map[string][]byte{}
	put := func(prefix string, b []byte) {
		h := sum(b)
		name := prefix + h
		if prefix == "data/" {
			name = "data/" + h[:2] + "/" + h
		}
		p := filepath.Join(root, ObjectsDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	for i := range n {
		b := make([]byte, r.IntN(40<<10)+i)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		put("data/", b)
	}
	put("index/", []byte("index"))
	put("snapshots/", []byte("snapshot"))
	put("receipts/", []byte("receipt"))
	return out
}

func finishedSeed(t *testing.T, n int) (string, map[string][]byte, string) {
	t.Helper()
	k := testKey(t)
	dir := t.TempDir()
	root := filepath.Join(dir, RootDir)
	objs := writeObjects(t, root, n)
	m := &Manifest{Format: Format, ID: strings.Repeat("5e", 32), Tenant: strings.Repeat("2", 24), Repository: strings.Repeat("cd", 32),
		Created: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC), Signer: k.Public()}
	var seen int64
	if err := Finish(t.Context(), root, m, k, FinishOptions{Progress: func(n int64) { seen += n }}); err != nil {
		t.Fatal(err)
	}
	if seen == 0 {
		t.Fatal("no progress reported")
	}
	return dir, objs, k.Public()
}

func TestFinishWritesAVerifiableSeed(t *testing.T) {
	dir, objs, pub := finishedSeed(t, 97)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(pub); err != nil {
		t.Fatal(err)
	}
	m := s.Manifest
	if len(m.Objects) != len(objs) || len(m.Snapshots) != 1 || len(m.Packs()) != 97 {
		t.Fatalf("manifest: %d objects, %d snapshots, %d packs", len(m.Objects), len(m.Snapshots), len(m.Packs()))
	}
	// 100 objects, any 5% of all files: 6 parity files (6 >= 0.05*106).
	if len(m.Parity.Files) != 6 {
		t.Fatalf("%d parity files, want 6", len(m.Parity.Files))
	}
	if _, err := m.Layout(); err != nil {
		t.Fatal(err)
	}
	if d, err := s.Check(t.Context(), CheckOptions{}); err != nil || len(d) != 0 {
		t.Fatalf("fresh seed: damage %v, err %v", d, err)
	}
}

// damage spoils files of the seed in the three ways the issue names.
func damage(t *testing.T, s *Seed, idx []int) {
	t.Helper()
	files := s.Manifest.Files()
	for n, i := range idx {
		p := FilePath(s.Root, files[i])
		switch n % 3 {
		case 0:
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		case 1:
			if err := os.Truncate(p, files[i].Size/2); err != nil {
				t.Fatal(err)
			}
		case 2:
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) == 0 {
				b = []byte{1}
			}
			for j := 0; j < len(b); j += 97 {
				b[j] ^= 0xa5
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// largest returns the indexes of the n largest files (the hardest case:
// each makes the most columns unknown).
func largest(files []File, n int) []int {
	idx := make([]int, len(files))
	for i := range idx {
		idx[i] = i
	}
	for i := 0; i < n; i++ {
		for j := i + 1; j < len(idx); j++ {
			if files[idx[j]].Size > files[idx[i]].Size {
				idx[i], idx[j] = idx[j], idx[i]
			}
		}
	}
	return idx[:n]
}

func TestRepairThreePercentRefuseTwenty(t *testing.T) {
	dir, objs, pub := finishedSeed(t, 97)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(pub); err != nil {
		t.Fatal(err)
	}
	// 3% of 106 files: 3, the largest ones plus a parity file.
	bad := append(largest(s.Manifest.Objects, 2), len(s.Manifest.Objects)+1)
	damage(t, s, bad)
	d, err := s.Check(t.Context(), CheckOptions{})
	if err != nil || len(d) != 3 {
		t.Fatalf("check found %v (err %v), want 3 damaged", d, err)
	}
	work := t.TempDir()
	if err := s.Repair(t.Context(), d, work, RepairOptions{}); err != nil {
		t.Fatal(err)
	}
	for i, f := range s.Manifest.Objects {
		b, err := os.ReadFile(s.Path(i))
		if err != nil || !bytes.Equal(b, objs[f.Name]) {
			t.Fatalf("%s after repair: %d bytes, err %v", f.Name, len(b), err)
		}
	}

	// 20%: 21 files. Refused, naming them, nothing written.
	dir2, _, pub2 := finishedSeed(t, 97)
	s2, _ := Open(dir2)
	if err := s2.Verify(pub2); err != nil {
		t.Fatal(err)
	}
	damage(t, s2, largest(s2.Manifest.Files(), 21))
	d2, _ := s2.Check(t.Context(), CheckOptions{})
	work2 := filepath.Join(t.TempDir(), "work")
	err = s2.Repair(t.Context(), d2, work2, RepairOptions{})
	var u *Unrepairable
	if !errors.As(err, &u) || len(u.Damaged) != 21 || !strings.Contains(err.Error(), d2[0].Name) {
		t.Fatalf("20%% damage: %v", err)
	}
	if _, err := os.Stat(work2); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a refused repair wrote into its work directory")
	}
}

func TestParityBudget(t *testing.T) {
	for _, c := range []struct {
		files int
		want  int64
	}{{1, 64 << 20}, {256, 64 << 20}, {1000, 1000 * 256 << 10}, {4096, 1 << 30}, {300000, 1 << 30}} {
		if got := ParityBudget(c.files); got != c.want {
			t.Errorf("ParityBudget(%d) = %d, want %d", c.files, got, c.want)
		}
	}
}
