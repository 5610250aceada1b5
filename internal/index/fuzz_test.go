package index

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/pack"
)

// FuzzDecodeFile: DecodeFile never panics, every error wraps ErrFormat, and
// a file it accepts re-encodes to the same bytes, which decode to the same
// File.
func FuzzDecodeFile(f *testing.F) {
	f.Add((&File{}).Encode())
	f.Add(sampleFile().Encode())
	f.Add((&File{Packs: []PackBlobs{{Pack: pack.ID{1}, Blobs: []pack.Entry{{ID: crypto.ID{2}, Length: crypto.Overhead, Type: pack.TypeMeta, Flags: pack.FlagZstd}}}}}).Encode())
	f.Add([]byte("CIX1\xff\xff\xff\x7f"))
	f.Add([]byte("CIX1\x00\x00\x00\x00\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := DecodeFile(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			if file != nil {
				t.Fatal("DecodeFile returned a file and an error")
			}
			return
		}
		for _, p := range file.Packs {
			for _, e := range p.Blobs {
				if e.Type > pack.TypeMeta || e.Flags&^pack.FlagZstd != 0 || e.Length < crypto.Overhead || e.Length > pack.MaxBlobLength || e.RawLength > pack.MaxBlobLength {
					t.Fatalf("accepted blob out of range: %+v", e)
				}
			}
		}
		re := file.Encode()
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", b, re)
		}
		again, err := DecodeFile(re)
		if err != nil {
			t.Fatalf("re-encoded file does not decode: %v", err)
		}
		if !reflect.DeepEqual(file, again) {
			t.Fatal("re-encoded file decodes to another File")
		}
	})
}
