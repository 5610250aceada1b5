package imgfmt

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cofferhq/coffer/internal/testutil/judge"
)

// creators makes an image of either format.
var creators = map[string]func(path string, size int64, data []Extent) (Image, error){
	"vhd": func(path string, size int64, data []Extent) (Image, error) {
		return CreateVHD(path, size, data, VHDOptions{})
	},
	"qcow2": func(path string, size int64, data []Extent) (Image, error) {
		return CreateQCOW2(path, size, data, QCOW2Options{})
	},
}

func TestWriteOutsideExtentsRefused(t *testing.T) {
	const size = 8 * mib
	data := []Extent{{mib, 100}, {3 * mib, 64 << 10}}
	for name, create := range creators {
		t.Run(name, func(t *testing.T) {
			img, err := create(filepath.Join(t.TempDir(), "x"), size, data)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			for _, w := range []Extent{
				{mib + 1, 100},         // runs past the extent's end
				{mib + 100, 1},         // just after it, same block
				{0, 1},                 // an unallocated block
				{3*mib - 1, 2},         // starts before the extent
				{size - 1, 2},          // past the disk
				{-1, 1},                // negative
				{mib + 50, 3*mib - 50}, // spans the gap between extents
			} {
				if n, err := img.WriteAt(make([]byte, w.Len), w.Off); n != 0 || !errors.Is(err, ErrOutsideExtents) {
					t.Errorf("WriteAt(%d bytes at %d) = %d, %v; want ErrOutsideExtents", w.Len, w.Off, n, err)
				}
			}
			ones := bytes.Repeat([]byte{1}, 100)
			if _, err := img.WriteAt(ones, mib); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 300)
			if _, err := img.ReadAt(got, mib-100); err != nil {
				t.Fatal(err)
			}
			if want := append(append(make([]byte, 100), ones...), make([]byte, 100)...); !bytes.Equal(got, want) {
				t.Fatal("the refused writes changed the image")
			}
			if n, err := img.ReadAt(got, size-100); n != 100 || err != io.EOF {
				t.Fatalf("ReadAt across the end = %d, %v; want 100, io.EOF", n, err)
			}
		})
	}
}

func TestBadExtentsRefusedAndNothingLeft(t *testing.T) {
	for name, create := range creators {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x")
			_, err := create(path, mib, []Extent{{mib - 10, 11}})
			if err == nil || !strings.Contains(err.Error(), "does not lie within") {
				t.Fatalf("an extent past the disk: %v", err)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refused image left %s behind: %v", path, err)
			}
			if _, err := create(path, -1, nil); err == nil {
				t.Fatal("a negative size was accepted")
			}
		})
	}
}

func TestExistingPathRefused(t *testing.T) {
	for name, create := range creators {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x")
			if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := create(path, mib, nil); err == nil || !strings.Contains(err.Error(), "does not exist yet") {
				t.Fatalf("creating over an existing file: %v", err)
			}
			if b, _ := os.ReadFile(path); string(b) != "keep me" {
				t.Fatal("the existing file was changed")
			}
		})
	}
}

func TestNewOnNonEmptyFileRefused(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "x")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("data"); err != nil {
		t.Fatal(err)
	}
	if _, err := NewVHD(f, mib, nil, VHDOptions{}); err == nil || !strings.Contains(err.Error(), "must be an empty regular file") {
		t.Fatalf("NewVHD on a non-empty file: %v", err)
	}
	if _, err := NewQCOW2(f, mib, nil, QCOW2Options{}); err == nil || !strings.Contains(err.Error(), "must be an empty regular file") {
		t.Fatalf("NewQCOW2 on a non-empty file: %v", err)
	}
}

func TestVHDLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.vhd")
	_, err := CreateVHD(path, VHDMaxSize+1, nil, VHDOptions{})
	if !errors.Is(err, ErrVHDTooLarge) || !strings.Contains(err.Error(), "2040 GiB") || !strings.Contains(err.Error(), "qcow2 or raw") {
		t.Fatalf("a disk one byte over 2040 GiB: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused VHD left a file: %v", err)
	}
	// The limit itself is a valid VHD (a sparse file with a 4 MiB BAT).
	qemu := judge.Need(t, "qemu-img")
	v, err := CreateVHD(path, VHDMaxSize, []Extent{{VHDMaxSize - 10, 10}}, VHDOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.WriteAt([]byte("0123456789"), VHDMaxSize-10); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if info := qemuInfo(t, qemu, "vpc", path); info.VirtualSize != VHDMaxSize {
		t.Fatalf("qemu-img reads %d bytes, want %d", info.VirtualSize, int64(VHDMaxSize))
	}
}

func TestImagesStaySparse(t *testing.T) {
	const size = 64 * mib
	for name, create := range creators {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x")
			img, err := create(path, size, []Extent{{0, size}})
			if err != nil {
				t.Fatal(err)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() < size {
				t.Fatalf("the image is %d bytes, less than the disk", st.Size())
			}
			if used := st.Sys().(*syscall.Stat_t).Blocks * 512; used > 4*mib {
				t.Fatalf("an image with nothing written uses %d bytes on disk", used)
			}
		})
	}
}

func TestCloseTwice(t *testing.T) {
	for name, create := range creators {
		t.Run(name, func(t *testing.T) {
			img, err := create(filepath.Join(t.TempDir(), "x"), mib, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			if err := img.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

func TestQCOW2LimitRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.qcow2")
	_, err := CreateQCOW2(path, QCOW2MaxSize+1, nil, QCOW2Options{})
	if err == nil || !strings.Contains(err.Error(), "restore it as raw") {
		t.Fatalf("a disk past qcow2's reach: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused image left a file: %v", err)
	}
}

func TestAllocate(t *testing.T) {
	const size = 16 * mib
	for name, create := range creators {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x")
			img, err := create(path, size, []Extent{{4 * mib, 4 * mib}})
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			used := func() int64 {
				st, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				return st.Sys().(*syscall.Stat_t).Blocks * 512
			}
			before := used()
			// The whole disk: only the extent's blocks are allocated.
			if err := img.Allocate(0, size); err != nil {
				t.Fatal(err)
			}
			// (The VHD's bitmap sectors were allocated at creation.)
			switch grew := used() - before; {
			case grew == 0:
				t.Skip("this file system does not allocate ahead")
			case grew < 4*mib-64<<10 || grew > 5*mib:
				t.Fatalf("the file grew by %d bytes for a 4 MiB extent", grew)
			}
			got := make([]byte, 4*mib)
			if _, err := img.ReadAt(got, 4*mib); err != nil || !bytes.Equal(got, make([]byte, 4*mib)) {
				t.Fatalf("allocated space must read zeros: %v", err)
			}
			for _, bad := range []Extent{{-1, 1}, {0, size + 1}, {size, 1}, {1, -1}} {
				if err := img.Allocate(bad.Off, bad.Len); err == nil {
					t.Errorf("Allocate(%d, %d) accepted", bad.Off, bad.Len)
				}
			}
		})
	}
}
