package parity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"testing"
)

// The parity files are part of the seed format: a seed exported today must
// be repairable by every later version. These hashes pin the parity bytes of
// both codes for fixed files; if an upgrade of klauspost/reedsolomon changes
// them, old seeds can no longer be repaired, and the new bytes need a new
// Layout.Code.
func TestParityGolden(t *testing.T) {
	cases := []struct {
		files int
		code  string
		want  string
	}{
		{50, CodeGF8, "9657640ea7eaa6f385ce4544b7975976173466b182a6b45950774b3698573e52"},
		{400, CodeGF16, "1d01e0a9a39b5b6543a0b48cc6d897688ea17a781c29c856450dc3df501c53b2"},
	}
	for _, c := range cases {
		sizes := make([]int64, c.files)
		files := make([][]byte, c.files)
		for i := range sizes {
			sizes[i] = int64(i*7919) % 1000
			files[i] = make([]byte, sizes[i])
			for j := range files[i] {
				files[i][j] = byte(i*31 + j*7 + i*j>>3)
			}
		}
		l, err := Plan(sizes, 0.05)
		if err != nil || l.Code != c.code {
			t.Fatalf("%d files: %+v, %v; want the %s code", c.files, l, err, c.code)
		}
		open := func(i int) (io.ReaderAt, error) { return bytes.NewReader(files[i]), nil }
		parity := make([]memFile, l.ParityShards)
		create := func(j int) (io.WriterAt, error) { return &parity[j], nil }
		if err := Encode(context.Background(), l, sizes, open, create, Options{MemoryBudget: 1 << 16}); err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		for j := range parity {
			h.Write(parity[j].data)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != c.want {
			t.Errorf("%s, %d+%d shards of %d bytes: parity hash %s, want %s", l.Code, l.DataShards, l.ParityShards, l.ShardSize, got, c.want)
		}
	}
}
