package sparse

import (
	"os"
	"path/filepath"
	"testing"
)

func TestIsZero(t *testing.T) {
	b := make([]byte, 3<<20+5)
	if !IsZero(b) || !IsZero(nil) {
		t.Fatal("zeros not recognised")
	}
	for _, i := range []int{0, 1 << 20, len(b) - 1} {
		b[i] = 1
		if IsZero(b) {
			t.Errorf("a non-zero byte at %d was missed", i)
		}
		b[i] = 0
	}
}

func TestDataRanges(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 64 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = 0xaa
	}
	for _, off := range []int64{8 << 20, 40 << 20} {
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	got := DataRanges(f, 0, size)
	var covered int64
	for _, r := range got {
		covered += r[1] - r[0]
		if r[0] < 0 || r[1] > size || r[0] >= r[1] {
			t.Fatalf("bad range %v", r)
		}
	}
	// Every written byte is inside a range.
	for _, off := range []int64{8 << 20, 40 << 20} {
		in := false
		for _, r := range got {
			if r[0] <= off && off+int64(len(data)) <= r[1] {
				in = true
			}
		}
		if !in {
			t.Errorf("data at %d not inside the ranges %v", off, got)
		}
	}
	// A file system that supports holes reports far less than the size.
	if covered == size {
		t.Skip("this file system does not report holes")
	}
	if covered > 8<<20 {
		t.Errorf("ranges cover %d bytes for 2 MiB of data", covered)
	}
	// A window inside a hole has no data.
	if r := DataRanges(f, 16<<20, 8<<20); len(r) != 0 {
		t.Errorf("hole reported as data: %v", r)
	}
}
