package diskread

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

// checkExtents checks that ext describes [off, off+n) of the image: in
// order, contiguous, adjacent extents of different kinds, zero extents
// reading as zeros, every non-zero byte inside a data extent, and no whole
// zero block of the image (64 KiB aligned) reported as data.
func checkExtents(t *testing.T, im *repofixture.Image, ext []Extent, off, n int64) {
	t.Helper()
	pos := off
	for i, x := range ext {
		if x.Off != pos || x.Len <= 0 {
			t.Fatalf("extent %d %+v: want one starting at %d", i, x, pos)
		}
		if i > 0 && ext[i-1].Data == x.Data {
			t.Fatalf("extents %d and %d are of one kind and not merged: %+v %+v", i-1, i, ext[i-1], x)
		}
		b := im.Read(x.Off, x.Len)
		if !x.Data && !bytes.Equal(b, make([]byte, len(b))) {
			t.Fatalf("extent %+v is reported zero but holds data", x)
		}
		if x.Data {
			for lo := (x.Off + bs - 1) / bs * bs; lo+bs <= x.Off+x.Len; lo += bs {
				if !im.HasData(lo, bs) || bytes.Equal(im.Read(lo, bs), make([]byte, bs)) {
					t.Fatalf("extent %+v reports the zero block at %d as data", x, lo)
				}
			}
		}
		pos += x.Len
	}
	if pos != off+n {
		t.Fatalf("extents end at %d, want %d", pos, off+n)
	}
}

func TestExtents(t *testing.T) {
	e := newEnv(t, testImage(t))
	d := e.open(t, t.Context(), Options{Maps: 1})
	all, err := d.Extents(t.Context(), 0, e.im.Size)
	if err != nil {
		t.Fatal(err)
	}
	checkExtents(t, e.im, all, 0, e.im.Size)
	// The zero block inside a chunk is a zero extent of its own; within a
	// block, what no chunk covers is zero (the 1000 bytes at 0 are data,
	// the rest of their block is not), and zeros inside a chunk are data.
	var sawBlock, sawTail, sawRun bool
	for _, x := range all {
		sawBlock = sawBlock || !x.Data && x.Off == 7*bs && x.Len == bs
		sawTail = sawTail || x.Data && x.Off == 0 && x.Len == 1000
		sawRun = sawRun || x.Data && x.Off <= 9*bs+100 && x.Off+x.Len >= 9*bs+900
	}
	if !sawBlock || !sawTail || !sawRun {
		t.Fatalf("zero block in a chunk %v, data ending mid-block %v, zeros in a chunk as data %v: %+v", sawBlock, sawTail, sawRun, all[:8])
	}
	r := rand.New(rand.NewPCG(21, 22))
	for range 100 {
		off := r.Int64N(e.im.Size)
		n := min(r.Int64N(e.im.Size-off+1), 1+r.Int64N(1<<20))
		if r.IntN(10) == 0 {
			n = r.Int64N(e.im.Size - off + 1)
		}
		ext, err := d.Extents(t.Context(), off, n)
		if err != nil {
			t.Fatal(err)
		}
		checkExtents(t, e.im, ext, off, n)
	}
	if st := d.Stats(); st.FetchedChunks != 0 {
		t.Fatalf("extents fetched %d chunks", st.FetchedChunks)
	}
	data, err := d.DataExtents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var want []Extent
	for _, x := range all {
		if x.Data {
			want = append(want, x)
		}
	}
	if len(data) != len(want) || len(data) == 0 {
		t.Fatalf("DataExtents gave %d extents, want %d", len(data), len(want))
	}
	for i := range data {
		if data[i] != want[i] {
			t.Fatalf("DataExtents[%d] = %+v, want %+v", i, data[i], want[i])
		}
	}
	if last := data[len(data)-1]; last.Off+last.Len != e.im.Size {
		t.Fatalf("the data at the disk's end is missing: last data extent %+v, size %d", last, e.im.Size)
	}
}

func TestExtentsBadRange(t *testing.T) {
	e := newEnv(t, testImage(t))
	d := e.open(t, t.Context(), Options{})
	for _, c := range [][2]int64{{-1, 10}, {0, -1}, {e.im.Size, 1}, {e.im.Size - 5, 6}, {1, 1 << 62}} {
		if _, err := d.Extents(t.Context(), c[0], c[1]); err == nil || !strings.Contains(err.Error(), "outside the disk") {
			t.Fatalf("Extents(%d, %d): %v", c[0], c[1], err)
		}
	}
	if ext, err := d.Extents(t.Context(), e.im.Size, 0); err != nil || len(ext) != 0 {
		t.Fatalf("empty range at the end: %v, %v", ext, err)
	}
}
