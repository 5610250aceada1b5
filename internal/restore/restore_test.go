package restore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
)

// checkOutput compares the restored file with the image, 1 MiB at a time.
func checkOutput(t *testing.T, path string, im *image) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != im.size {
		t.Fatalf("restored %d bytes, want %d", st.Size(), im.size)
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < im.size; off += int64(len(buf)) {
		n := min(int64(len(buf)), im.size-off)
		if _, err := io.ReadFull(f, buf[:n]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], im.read(off, n)) {
			t.Fatalf("restored bytes differ in the MiB at %d", off)
		}
	}
}

func TestRestoreRoundTrip(t *testing.T) {
	f := newFixture(t)
	im := sampleImage()
	small := &image{size: 5000, pieces: []piece{{10, []byte("hello, disk")}}}
	snap := f.snapshot("vm", f.disk(0, im, nil), f.disk(1, small, nil))
	r := f.reopen()

	out := filepath.Join(t.TempDir(), "disk0.img")
	rs := New(r, &snap.Disks[0], Options{Workers: 3})
	res, err := rs.Run(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	checkOutput(t, out, im)
	if !res.Verified || res.Digest != snap.Disks[0].Digest {
		t.Fatalf("result %+v", res)
	}
	var data int64
	for _, p := range im.pieces {
		data += int64(len(p.data))
	}
	if res.Written != data || res.Size != im.size || res.Fetched <= 0 || res.Chunks != 7 {
		t.Fatalf("counters %+v; want %d bytes written", res.Progress, data)
	}
	if p := rs.Progress(); p != res.Progress {
		t.Fatalf("Progress() = %+v after the run, result says %+v", p, res.Progress)
	}

	out1 := filepath.Join(t.TempDir(), "disk1.img")
	if _, err := New(r, &snap.Disks[1], Options{}).Run(ctx, out1); err != nil {
		t.Fatal(err)
	}
	checkOutput(t, out1, small)
}

func TestRestoreEmptyDisk(t *testing.T) {
	f := newFixture(t)
	snap := f.snapshot("empty", f.disk(0, &image{size: 0}, nil))
	out := filepath.Join(t.TempDir(), "empty.img")
	res, err := New(f.reopen(), &snap.Disks[0], Options{}).Run(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.Written != 0 {
		t.Fatalf("result %+v", res)
	}
	checkOutput(t, out, &image{size: 0})
}

// TestRestoreManyRegions restores a sparse disk of more regions than one
// planning window holds.
func TestRestoreManyRegions(t *testing.T) {
	f := newFixture(t)
	size := int64(windowRegions+1)*manifest.RegionSize + 77
	im := &image{size: size, pieces: []piece{
		{100, []byte("first region")},
		{int64(windowRegions-1)*manifest.RegionSize + 5, bytes.Repeat([]byte("window edge "), 1000)},
		{size - 70, bytes.Repeat([]byte{0xee}, 70)},
	}}
	snap := f.snapshot("big", f.disk(0, im, nil))
	out := filepath.Join(t.TempDir(), "big.img")
	res, err := New(f.reopen(), &snap.Disks[0], Options{}).Run(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified {
		t.Fatal("not verified")
	}
	fh, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if st, _ := fh.Stat(); st.Size() != size {
		t.Fatalf("size %d", st.Size())
	}
	for _, p := range im.pieces {
		got := make([]byte, len(p.data))
		if _, err := fh.ReadAt(got, p.off); err != nil || !bytes.Equal(got, p.data) {
			t.Fatalf("piece at %d: %v", p.off, err)
		}
	}
	got := make([]byte, 4096)
	if _, err := fh.ReadAt(got, 10*manifest.RegionSize); err != nil || !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatalf("a hole is not zero: %v", err)
	}
}

func TestRestoreRefusesToOverwrite(t *testing.T) {
	f := newFixture(t)
	im := &image{size: 3 * manifest.BlockSize, pieces: []piece{{1, []byte("data")}}}
	snap := f.snapshot("s", f.disk(0, im, nil))
	r := f.reopen()
	out := filepath.Join(t.TempDir(), "exists.img")
	if err := os.WriteFile(out, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(r, &snap.Disks[0], Options{}).Run(ctx, out); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("restore over an existing file: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "precious" {
		t.Fatal("a refused restore changed the existing file")
	}
	if _, err := New(r, &snap.Disks[0], Options{Overwrite: true}).Run(ctx, out); err != nil {
		t.Fatal(err)
	}
	checkOutput(t, out, im)
	// A longer existing file is truncated to the disk's size.
	if err := os.WriteFile(out, bytes.Repeat([]byte{1}, 10*manifest.BlockSize), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(r, &snap.Disks[0], Options{Overwrite: true}).Run(ctx, out); err != nil {
		t.Fatal(err)
	}
	checkOutput(t, out, im)
}

func TestRestoreDigestMismatch(t *testing.T) {
	f := newFixture(t)
	im := &image{size: manifest.RegionSize + 1000, pieces: []piece{{5, []byte("abc")}}}
	d := f.disk(0, im, nil)
	d.Digest = manifest.DiskDigest(im.size+1, nil).String()
	snap := f.snapshot("s", d)
	r := f.reopen()
	_, err := New(r, &snap.Disks[0], Options{}).Run(ctx, filepath.Join(t.TempDir(), "a.img"))
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong recorded digest: err = %v, want ErrMismatch", err)
	}
	// Without verification the same restore succeeds, unverified.
	out := filepath.Join(t.TempDir(), "b.img")
	res, err := New(r, &snap.Disks[0], Options{NoVerify: true}).Run(ctx, out)
	if err != nil || res.Verified {
		t.Fatalf("NoVerify: %+v, %v", res, err)
	}
	checkOutput(t, out, im)
}

func TestRestoreBlockHashMismatch(t *testing.T) {
	f := newFixture(t)
	im := &image{size: 2*manifest.RegionSize + 10, pieces: []piece{{manifest.RegionSize + 3*manifest.BlockSize + 9, []byte("xyz")}}}
	// Region 1's map records another hash for its block 3, as if the
	// chunk stored were not what was read at backup time.
	d := f.disk(0, im, func(ri int, m *manifest.RegionMap) {
		if ri == 1 {
			m.Blocks[3] = manifest.BlockHash([]byte("something else"))
		}
	})
	snap := f.snapshot("s", d)
	_, err := New(f.reopen(), &snap.Disks[0], Options{}).Run(ctx, filepath.Join(t.TempDir(), "a.img"))
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("err = %v, want ErrMismatch", err)
	}
	want := manifest.RegionSize + 3*manifest.BlockSize
	if !strings.Contains(err.Error(), "offset "+strconv.Itoa(want)) {
		t.Fatalf("error %q does not name the block at %d", err, want)
	}
}

// damageBlob flips a byte inside the stored blob of a chunk.
func damageBlob(t *testing.T, f *fixture, r *repo.Repo, id crypto.ID) {
	t.Helper()
	loc, ok := r.Index.Lookup(id)
	if !ok {
		t.Fatal("chunk not indexed")
	}
	p := filepath.Join(f.dir, filepath.FromSlash(repo.PackName(loc.Pack)))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[loc.Offset+loc.Length/2] ^= 0x40
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreDamagedChunk(t *testing.T) {
	f := newFixture(t)
	im := sampleImage()
	snap := f.snapshot("s", f.disk(0, im, nil))
	r := f.reopen()
	damageBlob(t, f, r, f.h.Sum(im.pieces[2].data[100<<10:400<<10]))
	_, err := New(r, &snap.Disks[0], Options{}).Run(ctx, filepath.Join(t.TempDir(), "a.img"))
	if !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("damaged chunk: err = %v, want ErrAuth", err)
	}
}

func TestRestoreDamagedRegionMap(t *testing.T) {
	f := newFixture(t)
	im := &image{size: manifest.RegionSize, pieces: []piece{{0, []byte("a")}}}
	d := f.disk(0, im, nil)
	snap := f.snapshot("s", d)
	r := f.reopen()
	regions, err := r.DiskRegions(ctx, &snap.Disks[0])
	if err != nil || len(regions) != 1 {
		t.Fatalf("DiskRegions: %v %v", regions, err)
	}
	damageBlob(t, f, r, regions[0])
	_, err = New(r, &snap.Disks[0], Options{}).Run(ctx, filepath.Join(t.TempDir(), "a.img"))
	if !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("damaged region map: err = %v, want ErrAuth", err)
	}
}

func TestRestoreChunkNotIndexed(t *testing.T) {
	f := newFixture(t)
	im := &image{size: 1 << 20, pieces: []piece{{0, []byte("indexed")}}}
	d := f.disk(0, im, func(ri int, m *manifest.RegionMap) {
		m.Extents = append(m.Extents, manifest.Extent{Offset: 1000, Length: 5, ID: crypto.ID{9}})
	})
	snap := f.snapshot("s", d)
	_, err := New(f.reopen(), &snap.Disks[0], Options{}).Run(ctx, filepath.Join(t.TempDir(), "a.img"))
	if err == nil || !strings.Contains(err.Error(), "not in the index") {
		t.Fatalf("missing chunk: %v", err)
	}
}

func TestRestoreExtentLengthMismatch(t *testing.T) {
	f := newFixture(t)
	im := &image{size: 1 << 20, pieces: []piece{{0, []byte("twelve bytes")}}}
	d := f.disk(0, im, func(ri int, m *manifest.RegionMap) { m.Extents[0].Length = 11 })
	snap := f.snapshot("s", d)
	_, err := New(f.reopen(), &snap.Disks[0], Options{}).Run(ctx, filepath.Join(t.TempDir(), "a.img"))
	if err == nil || !strings.Contains(err.Error(), "disk map says 11") {
		t.Fatalf("extent length mismatch: %v", err)
	}
}

func TestHashRegion(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	size := int64(manifest.RegionSize + 3*manifest.BlockSize + 10)
	fh, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := fh.Truncate(size); err != nil {
		t.Fatal(err)
	}
	data := []byte("some data")
	if _, err := fh.WriteAt(data, manifest.RegionSize+manifest.BlockSize+1); err != nil {
		t.Fatal(err)
	}
	// A block written with zeros hashes like a hole.
	if _, err := fh.WriteAt(make([]byte, 100), 5*manifest.BlockSize); err != nil {
		t.Fatal(err)
	}
	r0, err := HashRegion(fh, size, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(r0) != manifest.BlocksPerRegion {
		t.Fatalf("%d blocks", len(r0))
	}
	for i, h := range r0 {
		if h != manifest.ZeroBlockHash(manifest.BlockSize) {
			t.Fatalf("block %d of a zero region hashes as %s", i, h)
		}
	}
	r1, err := HashRegion(fh, size, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(r1) != 4 {
		t.Fatalf("last region has %d blocks, want 4", len(r1))
	}
	block := make([]byte, manifest.BlockSize)
	copy(block[1:], data)
	want := []manifest.Hash{
		manifest.ZeroBlockHash(manifest.BlockSize),
		manifest.BlockHash(block),
		manifest.ZeroBlockHash(manifest.BlockSize),
		manifest.ZeroBlockHash(10),
	}
	for i := range want {
		if r1[i] != want[i] {
			t.Fatalf("block %d: %s, want %s", i, r1[i], want[i])
		}
	}
}

func TestRestoreCanceled(t *testing.T) {
	f := newFixture(t)
	snap := f.snapshot("s", f.disk(0, sampleImage(), nil))
	r := f.reopen()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := New(r, &snap.Disks[0], Options{}).Run(cctx, filepath.Join(t.TempDir(), "a.img"))
	if err == nil {
		t.Fatal("a canceled restore succeeded")
	}
}
