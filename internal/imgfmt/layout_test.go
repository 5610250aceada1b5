package imgfmt

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/testutil/judge"
)

func TestCHS(t *testing.T) {
	for _, c := range []struct {
		sectors int64
		cyl     uint16
		h, s    uint8
	}{
		{(1 << 30) / 512, 2080, 16, 63}, // 1 GiB reads back as 1,073,479,680 bytes by geometry
		{20480, 301, 4, 17},             // 10 MiB
		{65535 * 16 * 255, 65535, 16, 255},
		{VHDMaxSize / 512, 65535, 16, 255}, // clamped
		{65535*16*63 - 1, 65534, 16, 63},
		{0, 0, 4, 17},
	} {
		cyl, h, s := chs(c.sectors)
		if cyl != c.cyl || h != c.h || s != c.s {
			t.Errorf("chs(%d) = %d/%d/%d, want %d/%d/%d", c.sectors, cyl, h, s, c.cyl, c.h, c.s)
		}
	}
}

// TestVHDMathMatchesQemu holds the geometry and both checksums against a VHD
// qemu-img made, for a size whose CHS geometry is exact.
func TestVHDMathMatchesQemu(t *testing.T) {
	qemu := judge.Need(t, "qemu-img")
	for _, size := range []int64{2080 * 16 * 63 * 512, 301 * 4 * 17 * 512} {
		path := filepath.Join(t.TempDir(), "qemu.vhd")
		judge.Run(t, qemu, "create", "-q", "-f", "vpc", "-o", "subformat=dynamic", path, strconv.FormatInt(size, 10))
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		footer, header := bytes.Clone(b[:512]), bytes.Clone(b[512:1536])
		cyl, h, s := chs(size / 512)
		if binary.BigEndian.Uint16(footer[56:]) != cyl || footer[58] != h || footer[59] != s {
			t.Errorf("size %d: qemu's geometry is %x, ours %d/%d/%d", size, footer[56:60], cyl, h, s)
		}
		for _, st := range []struct {
			name string
			b    []byte
			at   int
		}{{"footer", footer, 64}, {"dynamic header", header, 36}} {
			want := binary.BigEndian.Uint32(st.b[st.at:])
			clear(st.b[st.at : st.at+4])
			if got := vhdChecksum(st.b); got != want {
				t.Errorf("size %d: %s checksum %08x, qemu wrote %08x", size, st.name, got, want)
			}
		}
	}
}

func TestVHDFooterFields(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	id := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	size := int64(5*mib + 512)
	path := filepath.Join(t.TempDir(), "x.vhd")
	v, err := CreateVHD(path, size, []Extent{{size - 1, 1}}, VHDOptions{Clock: clocktest.New(now), UniqueID: id})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// footer copy, header, blank sector, one sector of BAT, one block.
	if want := int64(2048 + 512 + 512 + VHDBlockSize + 512); int64(len(b)) != want {
		t.Fatalf("file is %d bytes, want %d", len(b), want)
	}
	f, tail := b[:512], b[len(b)-512:]
	if !bytes.Equal(f, tail) {
		t.Fatal("the footer at the end differs from its copy at 0")
	}
	be := binary.BigEndian
	if string(f[:8]) != "conectix" || string(f[28:32]) != "tap\x00" || be.Uint32(f[60:]) != 3 ||
		be.Uint64(f[16:]) != 512 || be.Uint64(f[48:]) != uint64(size) || !bytes.Equal(f[68:84], id[:]) {
		t.Fatalf("footer fields wrong: % x", f[:84])
	}
	if got, want := be.Uint32(f[24:]), uint32(now.Sub(vhdEpoch)/time.Second); got != want {
		t.Fatalf("timestamp %d, want %d", got, want)
	}
	for _, st := range []struct {
		name string
		b    []byte
		at   int
	}{{"footer", bytes.Clone(f), 64}, {"dynamic header", bytes.Clone(b[512:1536]), 36}} {
		want := be.Uint32(st.b[st.at:])
		clear(st.b[st.at : st.at+4])
		if got := vhdChecksum(st.b); got != want {
			t.Errorf("%s checksum %08x, want %08x", st.name, want, got)
		}
	}
	h := b[512:1536]
	if string(h[:8]) != "cxsparse" || be.Uint64(h[8:]) != ^uint64(0) || be.Uint64(h[16:]) != 2048 ||
		be.Uint32(h[28:]) != 3 || be.Uint32(h[32:]) != VHDBlockSize || !bytes.Equal(h[40:1024], make([]byte, 984)) {
		t.Fatalf("dynamic header fields wrong: % x", h[:40])
	}
	bat := b[2048:2560]
	if be.Uint32(bat[0:]) != 0xFFFFFFFF || be.Uint32(bat[4:]) != 0xFFFFFFFF || be.Uint32(bat[8:]) != 2560/512 ||
		!bytes.Equal(bat[12:], bytes.Repeat([]byte{0xFF}, 500)) {
		t.Fatalf("BAT starts % x: want block 2 only, its bitmap at sector 5, then padding", bat[:16])
	}
	if !bytes.Equal(b[2560:3072], bytes.Repeat([]byte{0xFF}, 512)) {
		t.Fatal("the allocated block's bitmap is not all ones")
	}
}

func TestQCOW2Plan(t *testing.T) {
	// An empty disk needs a header, a refcount table and one refcount
	// block, as qemu-img create writes it (196608 bytes).
	if p := planQCOW2(0, nil); p.total != 3 || p.l1Size != 0 || p.rtCl != 1 || p.rbCl != 1 {
		t.Fatalf("size 0: %+v", p)
	}
	// 3 GiB + 1 sector: 4 L1 entries in one cluster.
	runs := []unitRun{{first: 0, n: 1}, {first: 8192, n: 8192}, {first: 3 * 16384, n: 1}}
	p := planQCOW2(3<<30+512, runs)
	if p.l1Size != 7 || !slices.Equal(p.l2Tables, []int64{0, 1, 6}) || p.dataUnits != 8194 {
		t.Fatalf("3 GiB: %+v", p)
	}
	if p.total != 1+1+1+1+3+8194 || p.dataOff != 7 {
		t.Fatalf("3 GiB: total %d data at cluster %d", p.total, p.dataOff)
	}
}

// TestQCOW2RefcountsCountThemselves crosses the point where one more
// refcount block is needed because of the refcount blocks themselves.
func TestQCOW2RefcountsCountThemselves(t *testing.T) {
	for n := int64(32760); n < 32775; n++ {
		p := planQCOW2(1<<40, []unitRun{{first: 0, n: n}})
		if p.rbCl*qcowRefsPerBlock < p.total || (p.rbCl-1)*qcowRefsPerBlock >= p.total {
			t.Fatalf("%d data clusters: %d refcount blocks for %d clusters", n, p.rbCl, p.total)
		}
	}
}

func TestNormalize(t *testing.T) {
	got, err := normalize(100, []Extent{{50, 10}, {0, 5}, {5, 5}, {55, 20}, {90, 0}, {99, 1}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Extent{{0, 10}, {50, 25}, {99, 1}}; !slices.Equal(got, want) {
		t.Fatalf("normalize = %v, want %v", got, want)
	}
	for _, bad := range []Extent{{-1, 2}, {0, -1}, {99, 2}, {101, 0}, {1, 1<<63 - 1}} {
		if _, err := normalize(100, []Extent{bad}); err == nil {
			t.Errorf("extent %+v of a 100-byte disk accepted", bad)
		}
	}
}

func TestVHDUniqueIDsDiffer(t *testing.T) {
	a, err := vhdFooter(mib, VHDOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := vhdFooter(mib, VHDOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[68:84], b[68:84]) || a[68+6]>>4 != 4 || a[68+8]>>6 != 2 {
		t.Fatalf("unique ids % x and % x: want two different version 4 UUIDs", a[68:84], b[68:84])
	}
}

// A VHD of an empty disk still has one BAT entry: libvhdi (vhdiinfo)
// refuses a table of none, which qemu allows.
func TestVHDEmptyDiskHasOneBATEntry(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty.vhd")
	v, err := CreateVHD(path, 0, nil, VHDOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.BigEndian.Uint32(b[512+28:]); n != 1 || len(b) != 2048+512+512 {
		t.Fatalf("max table entries %d, file %d bytes; want 1 entry, one BAT sector, then the footer", n, len(b))
	}
}
