package zstdenc_test

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/cofferhq/coffer/internal/zstdenc"
	"github.com/klauspost/compress/zstd"
)

// TestRoundTrip checks that what the encoder writes is a standard zstd frame
// the repository's pure-Go decoder reads back exactly, for text-like,
// random, empty and tiny inputs, with and without a reused buffer.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 300<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	var text bytes.Buffer
	words := []string{"disk", "block", "vault", "tenant", "snapshot", "region", "pack"}
	for text.Len() < 1<<20 {
		text.WriteString(words[rng.IntN(len(words))])
		text.WriteByte(" \n"[rng.IntN(2)])
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	enc := zstdenc.New()
	var buf []byte
	for name, in := range map[string][]byte{"text": text.Bytes(), "random": random, "empty": {}, "one": {42}} {
		for round := 0; round < 2; round++ {
			buf, err = enc.Encode(buf, in)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			out, err := dec.DecodeAll(buf, nil)
			if err != nil || !bytes.Equal(out, in) {
				t.Fatalf("%s (%s): round trip gave %d bytes, %v; want %d", name, zstdenc.Impl, len(out), err, len(in))
			}
		}
		if name == "text" && len(buf) > len(in)/2 {
			t.Fatalf("text compressed to %d of %d bytes", len(buf), len(in))
		}
	}
}
