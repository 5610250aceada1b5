package imgfmt

import (
	"encoding/binary"
	"testing"
)

// decodeExtents reads (offset, length) pairs of little-endian int64s, the
// way a region map from the repository could hand them over, good or bad.
func decodeExtents(b []byte) []Extent {
	var out []Extent
	for len(b) >= 16 && len(out) < 64 {
		out = append(out, Extent{int64(binary.LittleEndian.Uint64(b)), int64(binary.LittleEndian.Uint64(b[8:]))})
		b = b[16:]
	}
	return out
}

func encodeExtents(exts ...Extent) []byte {
	var b []byte
	for _, e := range exts {
		b = binary.LittleEndian.AppendUint64(b, uint64(e.Off))
		b = binary.LittleEndian.AppendUint64(b, uint64(e.Len))
	}
	return b
}

// FuzzLayout feeds sizes and extents from outside to the layout math of
// both formats: bad input is an error, never a panic, and good input gives
// every data byte one file offset past the metadata, without overlaps.
func FuzzLayout(f *testing.F) {
	f.Add(int64(40*mib+12345), encodeExtents(Extent{0, mib + 17}, Extent{3*mib - 100, 2*mib + 400}, Extent{40*mib + 12345 - 5000, 5000}))
	f.Add(int64(0), []byte{})
	f.Add(int64(VHDMaxSize), encodeExtents(Extent{VHDMaxSize - 10, 10}))
	f.Add(int64(1<<50), encodeExtents(Extent{1 << 49, 1 << 30}, Extent{0, 1}))
	f.Add(int64(100), encodeExtents(Extent{-1, 5}, Extent{90, 20}))
	f.Add(int64(1<<62), encodeExtents(Extent{1<<62 - 1, 1}))
	f.Add(int64(1<<63-1), encodeExtents(Extent{1<<63 - 2, 1}))
	f.Add(int64(QCOW2MaxSize), encodeExtents(Extent{QCOW2MaxSize - 1, 1}))
	f.Fuzz(func(t *testing.T, size int64, raw []byte) {
		data := decodeExtents(raw)
		exts, err := normalize(size, data)
		if err != nil || size < 0 {
			return
		}
		if checkVHDSize(size) == nil {
			checkVHDLayout(t, size, exts)
		}
		if checkQCOW2Size(size) == nil {
			checkQCOW2Layout(t, size, exts)
		}
	})
}

func checkVHDLayout(t *testing.T, size int64, exts []Extent) {
	entries := max(ceilDiv(roundUp(size, SectorSize), VHDBlockSize), 1)
	runs := unitRuns(exts, VHDBlockSize)
	start := vhdBATOff + roundUp(entries*4, SectorSize)
	end := place(runs, start, vhdStride)
	if last := len(runs) - 1; last >= 0 && runs[last].first+runs[last].n > entries {
		t.Fatalf("VHD: block %d allocated of %d", runs[last].first+runs[last].n-1, entries)
	}
	if (end-start)/vhdStride != countUnits(runs) || (end/SectorSize) > 1<<32-1 {
		t.Fatalf("VHD: %d blocks end at %d", countUnits(runs), end)
	}
	m := &mapped{size: roundUp(size, SectorSize), exts: exts, runs: runs, unit: VHDBlockSize, stride: vhdStride, skip: SectorSize}
	checkMapping(t, m, start, end)
}

func checkQCOW2Layout(t *testing.T, size int64, exts []Extent) {
	vsize := roundUp(size, SectorSize)
	runs := unitRuns(exts, QCOW2ClusterSize)
	p := planQCOW2(vsize, runs)
	end := place(runs, p.dataOff*QCOW2ClusterSize, QCOW2ClusterSize)
	if end != p.total*QCOW2ClusterSize || p.rbCl*qcowRefsPerBlock < p.total || p.rtCl*qcowEntries < p.rbCl {
		t.Fatalf("qcow2: %+v ends at %d", p, end)
	}
	if n := len(p.l2Tables); n > 0 && p.l2Tables[n-1] >= p.l1Size {
		t.Fatalf("qcow2: L2 table %d past an L1 of %d entries", p.l2Tables[n-1], p.l1Size)
	}
	m := &mapped{size: vsize, exts: exts, runs: runs, unit: QCOW2ClusterSize, stride: QCOW2ClusterSize}
	checkMapping(t, m, p.dataOff*QCOW2ClusterSize, end)
}

// checkMapping checks that each extent's first and last byte map inside
// [start, end), that extents map in guest order, that every segment makes
// progress and stays inside the image, and that the bytes around each
// extent are refused for writes.
func checkMapping(t *testing.T, m *mapped, start, end int64) {
	prev := int64(-1)
	for _, e := range m.exts {
		for _, g := range []int64{e.Off, max(e.End()-1, e.Off+1)} {
			if g >= e.End() {
				break // a one-byte extent
			}
			fo, l, ok := m.segment(g, 1)
			if !ok || l != 1 || fo < start || fo >= end || fo <= prev {
				t.Fatalf("guest byte %d maps to %d (ok %v), outside [%d, %d) or not after %d", g, fo, ok, start, end, prev)
			}
			prev = fo
		}
		for _, g := range []int64{0, e.Off - 1, e.End(), m.size - 1} {
			if g < 0 || g >= m.size {
				continue
			}
			if _, l, _ := m.segment(g, m.size-g); l < 1 || l > m.size-g {
				t.Fatalf("segment(%d) of a %d-byte image spans %d bytes", g, m.size, l)
			}
		}
		if !covers(m.exts, e.Off, e.Len) || covers(m.exts, e.Off, e.Len+1) || e.Off > 0 && covers(m.exts, e.Off-1, 1) {
			t.Fatalf("extent %+v: covers disagrees with the extents", e)
		}
	}
}
