package diskread

import (
	"math/rand/v2"
	"testing"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

// benchImage is a 16 GiB disk holding 256 MiB: 1 MiB of random bytes 1 MiB
// into each of its 64 MiB regions, with holes between.
func benchImage() *repofixture.Image {
	const size = 16 << 30
	r := rand.NewChaCha8([32]byte{1})
	im := &repofixture.Image{Size: size}
	for off := int64(0); off < size; off += rs {
		b := make([]byte, 1<<20)
		_, _ = r.Read(b)
		im.Pieces = append(im.Pieces, repofixture.Piece{Off: off + 1<<20, Data: b})
	}
	return im
}

// BenchmarkFirstByte measures instant access: opening a disk and reading
// its first 4 KiB somewhere in it, with a cold Disk (its caches empty) and
// the repository's index loaded ("open+read"), or with the repository
// opened and its index loaded too ("repo+open+read"). It reports the store
// requests and bytes each takes.
func BenchmarkFirstByte(b *testing.B) {
	e := newEnv(b, benchImage())
	r := rand.New(rand.NewPCG(1, 2))
	read := func(b *testing.B, rp *repo.Repo) {
		d, err := Open(b.Context(), rp, e.disk, Options{})
		if err != nil {
			b.Fatal(err)
		}
		off := int64(r.IntN(256))*rs + 1<<20 + r.Int64N(1<<20-4096)
		p := make([]byte, 4096)
		if _, err := d.ReadAt(p, off); err != nil {
			b.Fatal(err)
		}
		d.Close()
	}
	b.Run("open+read", func(b *testing.B) {
		start, bytes := e.count.Requests(), e.count.GetBytes()
		for b.Loop() {
			read(b, e.r)
		}
		b.ReportMetric(float64(e.count.Requests()-start)/float64(b.N), "requests/op")
		b.ReportMetric(float64(e.count.GetBytes()-bytes)/float64(b.N), "storebytes/op")
	})
	b.Run("repo+open+read", func(b *testing.B) {
		for b.Loop() {
			e.reopen(b, nil)
			read(b, e.r)
		}
	})
}

// BenchmarkSequential reads a disk holding 192 MiB of data from start to
// end in 1 MiB reads, as a VHD writer or nbdcopy would, with and without
// readahead.
func BenchmarkSequential(b *testing.B) {
	r := rand.NewChaCha8([32]byte{2})
	data := make([]byte, 192<<20)
	_, _ = r.Read(data)
	im := &repofixture.Image{Size: int64(len(data)), Pieces: []repofixture.Piece{{Off: 0, Data: data}}}
	e := newEnv(b, im)
	for _, c := range []struct {
		name string
		opt  Options
	}{{"readahead", Options{}}, {"no-readahead", Options{Readahead: -1}}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(im.Size)
			p := make([]byte, 1<<20)
			for b.Loop() {
				d, err := Open(b.Context(), e.r, e.disk, c.opt)
				if err != nil {
					b.Fatal(err)
				}
				for off := int64(0); off < im.Size; off += int64(len(p)) {
					if _, err := d.ReadAt(p, off); err != nil {
						b.Fatal(err)
					}
				}
				st := d.Stats()
				b.ReportMetric(float64(st.FetchedBytes), "storebytes/op")
				b.ReportMetric(float64(st.FetchedChunks), "chunks/op")
				d.Close()
			}
		})
	}
}
