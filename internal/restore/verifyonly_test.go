package restore

import (
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

// A verify-only restore of a good snapshot passes with the digest a restore
// to a file reports, writes nothing, and holds only the shared blocks until
// they are read back.
func TestVerifyOnlyPasses(t *testing.T) {
	f := repofixture.New(t, pass)
	im := repofixture.SampleImage()
	snap := f.Snapshot("vm", f.Disk(0, im, nil))
	r := f.Reopen()
	cwd, _ := os.Getwd()
	before, _ := os.ReadDir(cwd)
	vt := newVerifyTarget(im.Size)
	res, err := New(r, &snap.Disks[0], Options{Workers: 2, ReadBack: true}).verifyInto(ctx, vt)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.Digest != snap.Disks[0].Digest || res.Size != im.Size || res.Fetched == 0 || res.Done != im.Size {
		t.Fatalf("result %+v", res)
	}
	if len(vt.partial) != 0 || vt.held != 0 {
		t.Fatalf("%d blocks (%d bytes) still held after the restore: every kept block is read back once", len(vt.partial), vt.held)
	}
	// The sample has a handful of blocks shared by a chunk and a hole or
	// two chunks; ReadBack was ignored, so only those were kept.
	if p := vt.peakHeld(); p == 0 || p > 16*manifest.BlockSize {
		t.Fatalf("peak held %d bytes; want a few shared blocks, not the disk", p)
	}
	if after, _ := os.ReadDir(cwd); len(after) != len(before) {
		t.Fatal("a verify-only restore created a file")
	}
	if _, err := New(r, &snap.Disks[0], Options{NoVerify: true}).Verify(ctx); err == nil {
		t.Fatal("Verify with NoVerify succeeded")
	}
}

// A flipped byte in a pack fails the verify-only restore naming the chunk
// and its pack.
func TestVerifyOnlyTamperedPack(t *testing.T) {
	f := repofixture.New(t, pass)
	im := repofixture.SampleImage()
	snap := f.Snapshot("vm", f.Disk(0, im, nil))
	r := f.Reopen()
	id := f.ID(im.Pieces[2].Data[100<<10 : 400<<10])
	damageBlob(t, f, r, id)
	_, err := New(r, &snap.Disks[0], Options{Workers: 1}).Verify(ctx)
	if !errors.Is(err, crypto.ErrAuth) || !strings.Contains(err.Error(), "chunk "+id.String()) ||
		!strings.Contains(err.Error(), "pack ") || !strings.Contains(err.Error(), "the pack is damaged") {
		t.Fatalf("tampered pack: %v", err)
	}
}

// A recorded block hash that does not match fails with ErrMismatch naming
// the block, whichever way the block is checked: hashed as written, read
// back from the target's kept bytes, or a hole.
func TestVerifyOnlyBlockMismatch(t *testing.T) {
	data := repofixture.RandBytes(rand.New(rand.NewPCG(3, 4)), 200<<10)
	for _, block := range []int{1, 3, 10} {
		f := repofixture.New(t, pass)
		im := &repofixture.Image{Size: 2*manifest.RegionSize + 10, Pieces: []repofixture.Piece{{Off: manifest.RegionSize, Data: data}}}
		d := f.Disk(0, im, func(ri int, m *manifest.RegionMap) {
			if ri == 1 {
				m.Blocks[block] = manifest.BlockHash([]byte("something else"))
			}
		})
		snap := f.Snapshot("s", d)
		_, err := New(f.Reopen(), &snap.Disks[0], Options{}).Verify(ctx)
		want := "offset " + strconv.Itoa(manifest.RegionSize+block*manifest.BlockSize)
		if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), want) {
			t.Fatalf("block %d: %v; want ErrMismatch at %s", block, err, want)
		}
	}
}

// The target keeps a block written in parts, returns it once with zeros
// where nothing was written, and frees it; whole blocks are dropped.
func TestVerifyTargetKeepsSharedBlocks(t *testing.T) {
	const bs = manifest.BlockSize
	vt := newVerifyTarget(3*bs + 10)
	whole := make([]byte, bs)
	for i := range whole {
		whole[i] = 7
	}
	if _, err := vt.WriteAt(whole, 0); err != nil || len(vt.partial) != 0 {
		t.Fatalf("a whole block was kept: %v %d", err, len(vt.partial))
	}
	if _, err := vt.WriteAt([]byte("ab"), 2*bs-2); err != nil { // end of block 1
		t.Fatal(err)
	}
	if _, err := vt.WriteAt([]byte("cd"), 2*bs); err != nil { // start of block 2
		t.Fatal(err)
	}
	if _, err := vt.WriteAt([]byte("xyz"), 3*bs+7); err != nil { // the last, short block
		t.Fatal(err)
	}
	if len(vt.partial) != 3 || vt.held != 2*bs+10 {
		t.Fatalf("kept %d blocks, %d bytes", len(vt.partial), vt.held)
	}
	buf := make([]byte, bs)
	if _, err := vt.ReadAt(buf, bs); err != nil || string(buf[bs-2:]) != "ab" || buf[0] != 0 {
		t.Fatalf("read back block 1: %v %q", err, buf[bs-2:])
	}
	if _, ok := vt.partial[1]; ok {
		t.Fatal("block 1 still held after it was read back")
	}
	last := make([]byte, 10)
	if _, err := vt.ReadAt(last, 3*bs); err != nil || string(last[7:]) != "xyz" {
		t.Fatalf("the last block: %v %q", err, last)
	}
	if _, err := vt.WriteAt([]byte("x"), 3*bs+10); err == nil {
		t.Fatal("a write past the disk's end was accepted")
	}
	if _, err := vt.ReadAt(buf, 3*bs); err == nil {
		t.Fatal("a read past the disk's end was accepted")
	}
}
