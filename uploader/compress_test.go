package uploader

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/cofferhq/coffer/internal/zstdenc"
)

// Random chunks are not compressed; text, and a chunk that is random but
// for text at its end, are.
func TestCompressible(t *testing.T) {
	w := &worker{enc: zstdenc.New()}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 256<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	text := bytes.Repeat([]byte("a line of a log file, 2026-12-05 INFO backup done\n"), 6000)[:256<<10]
	mixed := append(append([]byte{}, random[:200<<10]...), text[:56<<10]...)
	small := random[:16<<10]
	for name, c := range map[string]struct {
		data []byte
		want bool
	}{"random": {random, false}, "text": {text, true}, "random then text": {mixed, true}, "small": {small, true}} {
		got, err := w.compressible(c.data)
		if err != nil || got != c.want {
			t.Errorf("%s: compressible = %v, %v; want %v", name, got, err, c.want)
		}
	}
}
