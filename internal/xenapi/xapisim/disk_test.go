package xapisim

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestRandomBlocks(t *testing.T) {
	size := int64(64 << 20) // 1024 blocks
	a, err := RandomBlocks(size, 10, 42)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := RandomBlocks(size, 10, 42)
	c, _ := RandomBlocks(size, 10, 43)
	if len(a) != 102 || !slices.Equal(a, b) || slices.Equal(a, c) || !slices.IsSorted(a) {
		t.Fatalf("picks: %d blocks, same seed equal %v, other seed equal %v", len(a), slices.Equal(a, b), slices.Equal(a, c))
	}
	if len(slices.Compact(slices.Clone(a))) != len(a) {
		t.Fatal("a block was picked twice")
	}
	if all, _ := RandomBlocks(size, 100, 1); len(all) != 1024 {
		t.Fatalf("100%% picked %d blocks", len(all))
	}
	for _, p := range []float64{-1, 100.5} {
		if _, err := RandomBlocks(size, p, 1); err == nil {
			t.Errorf("share %v accepted", p)
		}
	}
}

// TestCBTBitmapIsTheWrittenBlocks: after seeded random writes, the changed
// blocks between two snapshots are exactly the blocks written, and the
// bitmap is sized for the disk.
func TestCBTBitmapIsTheWrittenBlocks(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	if _, err := f.sim.CreateVM("big", []int64{64<<20 + 4096}, false); err != nil { // 1025 blocks, the last short
		t.Fatal(err)
	}
	d := DiskRef{VM: "big", N: 0}
	if err := f.sim.SetCBT(d, true); err != nil {
		t.Fatal(err)
	}
	vm := f.ok("VM.get_by_name_label", s, "big").([]any)[0].(string)
	s1 := f.disks(s, f.snapshot(s, vm, "n1"))[0]
	want, _ := RandomBlocks(64<<20+4096, 7, 5)
	want = append(want, 1024) // the short last block
	if err := f.sim.WriteBlocks(d, want, 5); err != nil {
		t.Fatal(err)
	}
	s2 := f.disks(s, f.snapshot(s, vm, "n2"))[0]
	b64 := f.ok("VDI.list_changed_blocks", s, s1, s2)
	if got := setBits(t, b64); !sameBlocks(got, want) {
		t.Fatalf("changed blocks differ: got %d, want %d", len(got), len(want))
	}
	if n := len(b64.(string)); n != 4*((129+2)/3) { // ceil(1025/8) = 129 bytes
		t.Fatalf("bitmap is %d base64 characters", n)
	}
	// Growing the disk grows the next bitmap; the old blocks stay.
	if err := f.sim.Resize(d, 128<<20); err != nil {
		t.Fatal(err)
	}
	if err := f.sim.WriteBlocks(d, []int64{2000}, 6); err != nil {
		t.Fatal(err)
	}
	s3 := f.disks(s, f.snapshot(s, vm, "n3"))[0]
	got := setBits(t, f.ok("VDI.list_changed_blocks", s, s1, s3))
	if !sameBlocks(got, append(slices.Clone(want), 2000)) {
		t.Fatalf("after resize: %d blocks changed", len(got))
	}
	if vs := f.ok("VDI.get_virtual_size", s, s3); vs != float64(128<<20) {
		t.Fatalf("snapshot size %v", vs)
	}
}

func TestImportExportRoundTrip(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "in.img")
	data := make([]byte, 700<<10) // shorter than the 1 MiB disk, not block-aligned
	for i := range data {
		data[i] = byte(i*7 + i>>16)
	}
	copy(data[128<<10:192<<10], make([]byte, 64<<10)) // a zero block
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	d := DiskRef{VM: "web", N: 0}
	if err := f.sim.WriteBlocks(d, []int64{2, 14}, 1); err != nil { // blocks the image must overwrite
		t.Fatal(err)
	}
	if err := f.sim.Import(d, img); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.img")
	if err := f.sim.Export(d, out); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, out)
	if len(got) != 1<<20 || !bytes.Equal(got[:len(data)], data) || !allZero(got[len(data):]) {
		t.Fatal("the disk does not read as the image")
	}
	big := filepath.Join(dir, "big.img")
	if err := os.WriteFile(big, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.sim.Import(d, big); err == nil {
		t.Fatal("an image larger than the disk was imported")
	}
	if err := f.sim.Resize(d, 512<<10); err == nil {
		t.Fatal("a disk shrank")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"64M": 64 << 20, "1G": 1 << 30, "16g": 16 << 30, "4096": 4096, "2K": 2048} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "M", "0", "-1G", "100", "1.5G", "9999999999999T", "1X"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestStateSurvivesAndRejectsDamage(t *testing.T) {
	f := newFixture(t)
	again, err := Open(f.sim.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := again.List()
	if err != nil || len(l.VMs) != 1 {
		t.Fatalf("reopened: %v %v", l, err)
	}
	if err := os.WriteFile(filepath.Join(f.sim.Dir, "state.json"), []byte(`{"version":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := again.List(); err == nil {
		t.Fatal("a damaged state.json was accepted")
	}
	if _, err := Open(t.TempDir(), nil); err == nil {
		t.Fatal("an empty folder opened")
	}
}

// TestResizeAfterShortLastBlock: a block that was the short last block
// before a resize reads as its old bytes then zeros.
func TestResizeAfterShortLastBlock(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	if _, err := f.sim.CreateVM("odd", []int64{BlockSize + 512}, false); err != nil {
		t.Fatal(err)
	}
	d := DiskRef{VM: "odd", N: 0}
	if err := f.sim.WriteBlocks(d, []int64{0, 1}, 3); err != nil {
		t.Fatal(err)
	}
	vm := f.ok("VM.get_by_name_label", s, "odd").([]any)[0].(string)
	f.snapshot(s, vm, "freeze") // block 1 now lives in a lower, shorter layer
	if err := f.sim.Resize(d, 4*BlockSize); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "odd.img")
	if err := f.sim.Export(d, out); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, out)
	want := make([]byte, 512)
	blockData(3, 1, want)
	if len(got) != 4*BlockSize || !bytes.Equal(got[BlockSize:BlockSize+512], want) || !allZero(got[BlockSize+512:]) {
		t.Fatal("the grown disk does not read as old bytes then zeros")
	}
}
