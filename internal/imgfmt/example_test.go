package imgfmt_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/internal/imgfmt"
)

// A restore lays the image out from the disk's size and data extents, then
// writes chunks at guest offsets (from many goroutines in practice), reads
// back what it verifies, syncs and closes.
func ExampleCreateQCOW2() {
	dir, err := os.MkdirTemp("", "imgfmt")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	size := int64(10<<20 + 12345) // not a sector multiple: rounded up
	data := []imgfmt.Extent{{Off: 1 << 20, Len: 5}, {Off: size - 3, Len: 3}}
	img, err := imgfmt.CreateQCOW2(filepath.Join(dir, "disk.qcow2"), size, data, imgfmt.QCOW2Options{})
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range data {
		if err := img.Allocate(e.Off, e.Len); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := img.WriteAt([]byte("hello"), 1<<20); err != nil {
		log.Fatal(err)
	}
	if _, err := img.WriteAt([]byte("end"), size-3); err != nil {
		log.Fatal(err)
	}
	_, err = img.WriteAt([]byte("x"), 0)
	fmt.Println("write outside the extents refused:", err != nil)
	got := make([]byte, 7)
	if _, err := img.ReadAt(got, 1<<20-1); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q, virtual size %d for a %d-byte disk\n", got, img.Size(), size)
	if err := img.Sync(); err != nil {
		log.Fatal(err)
	}
	if err := img.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// write outside the extents refused: true
	// "\x00hello\x00", virtual size 10498560 for a 10498105-byte disk
}
