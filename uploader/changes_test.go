package uploader_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/sparse"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
)

// guestWrites changes the blocks of the image that rng picks (share of
// them), in the ways a guest does: new random bytes, text, zeros over
// data, data into a hole; and returns the changed-block bitmap a hypervisor
// would report, with a few blocks marked that did not change (CBT may
// over-report, never under-report).
func guestWrites(t *testing.T, path string, share float64, rng *rand.Rand) []byte {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	size := st.Size()
	nblocks := (size + manifest.BlockSize - 1) / manifest.BlockSize
	bitmap := make([]byte, uploader.BitmapLen(size))
	mark := func(b int64) { bitmap[b>>3] |= 0x80 >> (b & 7) }
	buf := make([]byte, manifest.BlockSize)
	// What each pick writes: zeros, text, or random bytes.
	const zeros, text, random = 0, 1, 2
	type write struct{ block, kind int64 }
	// Always the first and the last (partial) block and both sides of a
	// region boundary; data into the holes next to a few runs of data, so
	// that runs grow; then random blocks.
	picks := []write{{0, random}, {nblocks - 1, text}, {manifest.BlocksPerRegion - 1, zeros}, {manifest.BlocksPerRegion, random}}
	edges := runEdges(t, f, nblocks)
	for i := 0; i < len(edges) && i < 6; i++ {
		picks = append(picks, write{edges[rng.IntN(len(edges))], random})
	}
	for i := 0; i < int(share*float64(nblocks)); i++ {
		picks = append(picks, write{rng.Int64N(nblocks), int64(i % 5 % 3)})
	}
	for _, w := range picks {
		n := min(manifest.BlockSize, size-w.block*manifest.BlockSize)
		switch w.kind {
		case zeros:
			clear(buf)
		case text:
			for j := range buf {
				buf[j] = "guest writes text\n"[j%18]
			}
		default:
			for j := range buf {
				buf[j] = byte(rng.Uint32())
			}
		}
		if _, err := f.WriteAt(buf[:n], w.block*manifest.BlockSize); err != nil {
			t.Fatal(err)
		}
		mark(w.block)
	}
	for i := 0; i < 3; i++ {
		mark(rng.Int64N(nblocks)) // reported, not changed
	}
	return bitmap
}

// runEdges returns the zero blocks next to a block with data.
func runEdges(t *testing.T, f *os.File, nblocks int64) []int64 {
	t.Helper()
	zero := make([]bool, nblocks)
	buf := make([]byte, manifest.BlockSize)
	for b := range zero {
		n, _ := f.ReadAt(buf, int64(b)*manifest.BlockSize)
		zero[b] = sparse.IsZero(buf[:n])
	}
	var edges []int64
	for b := int64(1); b+1 < nblocks; b++ {
		if zero[b] && (!zero[b-1] || !zero[b+1]) {
			edges = append(edges, b)
		}
	}
	return edges
}

func backupSource(t *testing.T, s *uploader.Session, path string, ch *uploader.Changes, chunking manifest.Chunking) (manifest.Disk, *uploader.DiskCounters) {
	t.Helper()
	src, err := source.OpenImage(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var c uploader.DiskCounters
	d, err := s.BackupDisk(context.Background(), uploader.DiskJob{Source: src, Counters: &c, Changes: ch, Chunking: chunking})
	if err != nil {
		t.Fatal(err)
	}
	return d, &c
}

// A changed-block night reads only the changed blocks, yet stores exactly
// what a full read of the same disk stores: the same region maps (so the
// same chunks) and the same digest; and it restores byte-identical. So
// with either chunking; with blocks, a changed block is one new chunk and
// nothing is read back but the blocks around partly changed ones.
func TestChangedBlockNightEqualsFullRead(t *testing.T) {
	for _, chunking := range []manifest.Chunking{manifest.ChunkingContent, manifest.ChunkingBlocks} {
		t.Run(chunking.String(), func(t *testing.T) { testChangedBlockNight(t, chunking) })
	}
}

func testChangedBlockNight(t *testing.T, chunking manifest.Chunking) {
	ctx := context.Background()
	dir, st, r := newLocalRepo(t)
	img := filepath.Join(dir, "disk.img")
	writeImage(t, img, 3*manifest.RegionSize+5*manifest.BlockSize+777, 7)
	rng := rand.New(rand.NewPCG(7, 7))
	s, err := uploader.StartSession(ctx, r, uploader.SessionOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := backupSource(t, s, img, nil, chunking)
	if base.Chunking != chunking {
		t.Fatalf("the disk record says chunking %q, want %q", base.Chunking, chunking)
	}
	if _, err := s.Commit(ctx, &manifest.Snapshot{Name: "full", Source: manifest.Source{Kind: "image"}, Disks: []manifest.Disk{base}}); err != nil {
		t.Fatal(err)
	}
	for night := 2; night <= 3; night++ {
		bitmap := guestWrites(t, img, 0.02, rng)
		ch := &uploader.Changes{Base: &base, Bitmap: bitmap}
		cbt, c := backupSource(t, s, img, ch, chunking)
		full, _ := backupSource(t, s, img, nil, chunking)
		if cbt.Digest != full.Digest || !equalLists(cbt.Lists, full.Lists) {
			t.Fatalf("night %d: the changed-block backup differs from a full read: digest %s vs %s", night, cbt.Digest, full.Digest)
		}
		changed := ch.Count(cbt.Size) * manifest.BlockSize
		if c.Read.Load() > changed {
			t.Fatalf("night %d: read %d bytes, the changed blocks are %d", night, c.Read.Load(), changed)
		}
		if c.Read.Load() == 0 {
			t.Fatalf("night %d: read nothing", night)
		}
		switch {
		case chunking == manifest.ChunkingContent && c.Fetched.Load() == 0:
			t.Fatalf("night %d: content-defined chunks were cut again around changed blocks without reading any back", night)
		case chunking == manifest.ChunkingBlocks && (c.Fetched.Load() != 0 || c.NewBytes.Load() > changed):
			t.Fatalf("night %d: with a chunk per block, read back %d bytes and stored %d new for %d bytes of changed blocks", night, c.Fetched.Load(), c.NewBytes.Load(), changed)
		}
		id, err := s.Commit(ctx, &manifest.Snapshot{Name: "cbt", Source: manifest.Source{Kind: "image"}, Disks: []manifest.Disk{cbt}})
		if err != nil {
			t.Fatal(err)
		}
		checkRestores(t, st, map[string]string{"vm": id}, map[string][]string{"vm": {img}})
		base = cbt
	}
	// The other chunking cannot build on this base.
	other := manifest.ChunkingBlocks
	if chunking == manifest.ChunkingBlocks {
		other = manifest.ChunkingContent
	}
	src, err := source.OpenImage(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ch := &uploader.Changes{Base: &base, Bitmap: make([]byte, uploader.BitmapLen(base.Size))}
	if _, err := s.BackupDisk(ctx, uploader.DiskJob{Source: src, Changes: ch, Chunking: other}); !errors.Is(err, uploader.ErrChangesUnusable) {
		t.Fatalf("changes on a base cut into %s, backed up into %s: %v", chunking, other, err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// Changes that do not fit the disk are refused before anything is read.
func TestChangesCheck(t *testing.T) {
	size := int64(10 * manifest.BlockSize)
	base := &manifest.Disk{Size: size, BlockSize: manifest.BlockSize, RegionSize: manifest.RegionSize}
	cases := map[string]uploader.Changes{
		"no base":      {Bitmap: make([]byte, 2)},
		"resized":      {Base: &manifest.Disk{Size: size * 2, BlockSize: manifest.BlockSize, RegionSize: manifest.RegionSize}, Bitmap: make([]byte, 2)},
		"short bitmap": {Base: base, Bitmap: make([]byte, 1)},
		"long bitmap":  {Base: base, Bitmap: make([]byte, 3)},
	}
	for name, ch := range cases {
		if err := ch.Check(size, manifest.ChunkingContent); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ok := uploader.Changes{Base: base, Bitmap: make([]byte, 2)}
	if err := ok.Check(size, manifest.ChunkingContent); err != nil {
		t.Fatal(err)
	}
	if err := ok.Check(size, manifest.ChunkingBlocks); !errors.Is(err, uploader.ErrChangesUnusable) {
		t.Fatalf("a base cut into content-defined chunks, used for blocks: %v", err)
	}
}

func equalLists(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
