package diskread

import (
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/manifest"
)

// FuzzRegionMapUse feeds region maps that parse (from any bytes) to what
// reads and Extents do with them: checkHoles never panics, and
// regionExtents describes the whole region, in order, without gaps.
func FuzzRegionMapUse(f *testing.F) {
	seed := func(m *manifest.RegionMap, regionLen int64) { f.Add(m.Encode(), regionLen) }
	blocks := func(n int, data ...int) []manifest.BlockSum {
		out := make([]manifest.BlockSum, n)
		for i := range out {
			out[i] = manifest.ZeroBlockHash(manifest.BlockSize)
		}
		for _, b := range data {
			out[b] = manifest.BlockSum{1}
		}
		return out
	}
	seed(&manifest.RegionMap{Blocks: blocks(3)}, 3*bs)
	seed(&manifest.RegionMap{Extents: []manifest.Extent{{Offset: 10, Length: 100, ID: crypto.ID{1}}}, Blocks: blocks(2, 0)}, 2*bs)
	seed(&manifest.RegionMap{Extents: []manifest.Extent{{Offset: 0, Length: bs + 5}, {Offset: bs + 5, Length: 7}}, Blocks: blocks(2, 0, 1)}, bs+100)
	f.Fuzz(func(t *testing.T, b []byte, regionLen int64) {
		if regionLen <= 0 || regionLen > rs {
			return
		}
		m, err := manifest.DecodeRegionMap(b, regionLen)
		if err != nil {
			return
		}
		_ = checkHoles(m, regionLen, 0)
		pos := int64(0)
		regionExtents(m, regionLen, func(lo, hi int64, data bool) {
			if lo != pos || hi <= lo {
				t.Fatalf("extent [%d, %d) after %d", lo, hi, pos)
			}
			pos = hi
		})
		if pos != regionLen {
			t.Fatalf("extents end at %d, want %d", pos, regionLen)
		}
	})
}
