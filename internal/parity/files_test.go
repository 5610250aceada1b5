package parity

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// The way a seed uses the package: files on disk, opened for each window
// and closed after it, parity files written in place, repaired files
// written to temporary files and checked by hash.
func TestFilesOnDisk(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(19, 19))
	sizes := randomSizes(rng, 25, 50000)
	sizes[0] = 300000
	name := func(i int) string {
		if i < len(sizes) {
			return filepath.Join(dir, fmt.Sprintf("data-%d", i))
		}
		return filepath.Join(dir, fmt.Sprintf("parity-%d", i-len(sizes)))
	}
	var sums [][32]byte
	for i, s := range sizes {
		b := make([]byte, s)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		sums = append(sums, sha256.Sum256(b))
		if err := os.WriteFile(name(i), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, err := Plan(sizes, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	open := func(i int) (io.ReaderAt, error) { return os.Open(name(i)) }
	create := func(j int) (io.WriterAt, error) {
		return os.OpenFile(name(len(sizes)+j), os.O_WRONLY|os.O_CREATE, 0o600)
	}
	o := Options{MemoryBudget: 64 << 10}
	if err := Encode(context.Background(), l, sizes, open, create, o); err != nil {
		t.Fatal(err)
	}
	// lose the largest file, cut another short, lose a parity file
	must(t, os.Remove(name(0)))
	must(t, os.Truncate(name(3), sizes[3]/2))
	must(t, os.Remove(name(len(sizes)+1)))
	damaged := []int{0, 3, len(sizes) + 1}

	repaired := func(i int) string { return filepath.Join(dir, fmt.Sprintf("repaired-%d", i)) }
	out := func(i int) (io.WriterAt, error) {
		return os.OpenFile(repaired(i), os.O_WRONLY|os.O_CREATE, 0o600)
	}
	if err := Repair(context.Background(), l, sizes, damaged, open, out, o); err != nil {
		t.Fatal(err)
	}
	for _, i := range damaged[:2] {
		b, err := os.ReadFile(repaired(i))
		if err != nil || sha256.Sum256(b) != sums[i] {
			t.Errorf("repaired file %d (%d bytes of %d, error %v) is not the original", i, len(b), sizes[i], err)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
