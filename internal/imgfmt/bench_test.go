package imgfmt

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// BenchmarkWriteAt writes a 64 MiB disk in 256 KiB pieces from four
// goroutines into a raw file and into each format, to show what the layout
// costs over raw.
func BenchmarkWriteAt(b *testing.B) {
	const size, piece = 64 * mib, 256 << 10
	data := []Extent{{0, size}}
	buf := make([]byte, piece)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	targets := map[string]func(path string) (writerCloser, error){
		"raw": func(path string) (writerCloser, error) { return os.Create(path) },
		"vhd": func(path string) (writerCloser, error) { return CreateVHD(path, size, data, VHDOptions{}) },
		"qcow2": func(path string) (writerCloser, error) {
			return CreateQCOW2(path, size, data, QCOW2Options{})
		},
	}
	for _, name := range []string{"raw", "vhd", "qcow2"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				path := filepath.Join(b.TempDir(), "img")
				w, err := targets[name](path)
				if err != nil {
					b.Fatal(err)
				}
				writeAll(b, w, buf, size)
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				os.Remove(path)
			}
		})
	}
}

type writerCloser interface {
	WriteAt(p []byte, off int64) (int, error)
	Close() error
}

func writeAll(b *testing.B, w writerCloser, buf []byte, size int64) {
	var wg sync.WaitGroup
	for g := range int64(4) {
		wg.Go(func() {
			for off := g * int64(len(buf)); off < size; off += 4 * int64(len(buf)) {
				if _, err := w.WriteAt(buf, off); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
