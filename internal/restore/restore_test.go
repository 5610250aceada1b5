package restore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

func init() { repofixture.UseInsecureKDF() }

var ctx = context.Background()

const pass = "restore test passphrase"

// allocatedBytes is the space the file system allocated for path.
func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// checkOutput compares the restored file with the image, 1 MiB at a time.
func checkOutput(t *testing.T, path string, im *repofixture.Image) {
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
	if st.Size() != im.Size {
		t.Fatalf("restored %d bytes, want %d", st.Size(), im.Size)
	}
	buf := make([]byte, 1<<20)
	for off := int64(0); off < im.Size; off += int64(len(buf)) {
		n := min(int64(len(buf)), im.Size-off)
		if _, err := io.ReadFull(f, buf[:n]); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], im.Read(off, n)) {
			t.Fatalf("restored bytes differ in the MiB at %d", off)
		}
	}
}

func TestRestoreRoundTrip(t *testing.T) {
	f := repofixture.New(t, pass)
	im := repofixture.SampleImage()
	small := &repofixture.Image{Size: 5000, Pieces: []repofixture.Piece{{Off: 10, Data: []byte("hello, disk")}}}
	snap := f.Snapshot("vm", f.Disk(0, im, nil), f.Disk(1, small, nil))
	r := f.Reopen()

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
	for _, p := range im.Pieces {
		data += int64(len(p.Data))
	}
	if res.Written != data || res.Size != im.Size || res.Done != im.Size || res.Fetched <= 0 || res.Chunks != 7 {
		t.Fatalf("counters %+v; want %d bytes written", res.Progress, data)
	}
	if p := rs.Progress(); p != res.Progress {
		t.Fatalf("Progress() = %+v after the run, result says %+v", p, res.Progress)
	}
	// The output is allocated under the chunks only: the holes stay holes.
	if a := allocatedBytes(t, out); a > data+int64(len(im.Pieces))*8<<10 {
		t.Fatalf("%d bytes allocated for %d bytes of data in a %d-byte disk", a, data, im.Size)
	}

	out1 := filepath.Join(t.TempDir(), "disk1.img")
	if _, err := New(r, &snap.Disks[1], Options{}).Run(ctx, out1); err != nil {
		t.Fatal(err)
	}
	checkOutput(t, out1, small)
}

func TestRestoreEmptyDisk(t *testing.T) {
	f := repofixture.New(t, pass)
	snap := f.Snapshot("empty", f.Disk(0, &repofixture.Image{Size: 0}, nil))
	out := filepath.Join(t.TempDir(), "empty.img")
	res, err := New(f.Reopen(), &snap.Disks[0], Options{}).Run(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.Written != 0 {
		t.Fatalf("result %+v", res)
	}
	checkOutput(t, out, &repofixture.Image{Size: 0})
}

// TestRestoreManyRegions restores a sparse disk of more regions than one
// planning window holds.
func TestRestoreManyRegions(t *testing.T) {
	f := repofixture.New(t, pass)
	size := int64(windowRegions+1)*manifest.RegionSize + 77
	im := &repofixture.Image{Size: size, Pieces: []repofixture.Piece{
		{Off: 100, Data: []byte("first region")},
		{Off: int64(1+windowGrowth)*manifest.RegionSize - 6000, Data: bytes.Repeat([]byte("window edge "), 1000)},
		{Off: int64(windowRegions-1)*manifest.RegionSize + 5, Data: bytes.Repeat([]byte("last window "), 1000)},
		{Off: size - 70, Data: bytes.Repeat([]byte{0xee}, 70)},
	}}
	// The same bytes in regions of one window and of later windows: their
	// chunks are fetched once per window and written to every region, and
	// each region is verified only when all its writes are done.
	same := bytes.Repeat([]byte("shared by several regions "), 20000)
	for _, r := range []int64{2, 4, 5, 6, 12, 16} {
		im.Pieces = append(im.Pieces, repofixture.Piece{Off: r*manifest.RegionSize + 16384, Data: same})
	}
	slices.SortFunc(im.Pieces, func(a, b repofixture.Piece) int { return cmp.Compare(a.Off, b.Off) })
	snap := f.Snapshot("big", f.Disk(0, im, nil))
	out := filepath.Join(t.TempDir(), "big.img")
	res, err := New(f.Reopen(), &snap.Disks[0], Options{}).Run(ctx, out)
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
	for _, p := range im.Pieces {
		got := make([]byte, len(p.Data))
		if _, err := fh.ReadAt(got, p.Off); err != nil || !bytes.Equal(got, p.Data) {
			t.Fatalf("piece at %d: %v", p.Off, err)
		}
	}
	got := make([]byte, 4096)
	if _, err := fh.ReadAt(got, 10*manifest.RegionSize); err != nil || !bytes.Equal(got, make([]byte, 4096)) {
		t.Fatalf("a hole is not zero: %v", err)
	}
}

func TestRestoreRefusesToOverwrite(t *testing.T) {
	f := repofixture.New(t, pass)
	im := &repofixture.Image{Size: 3 * manifest.BlockSize, Pieces: []repofixture.Piece{{Off: 1, Data: []byte("data")}}}
	snap := f.Snapshot("s", f.Disk(0, im, nil))
	r := f.Reopen()
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
	f := repofixture.New(t, pass)
	im := &repofixture.Image{Size: manifest.RegionSize + 1000, Pieces: []repofixture.Piece{{Off: 5, Data: []byte("abc")}}}
	d := f.Disk(0, im, nil)
	d.Digest = manifest.DiskDigest(im.Size+1, nil).String()
	snap := f.Snapshot("s", d)
	r := f.Reopen()
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

// TestRestoreBlockHashMismatch changes one recorded block hash of a region
// map, as if the chunk stored were not what was read at backup time, for
// each way a block is verified: inside one chunk (hashed as written), at a
// chunk's edge (read back), and in a hole (checked against the zero block).
// The restore fails with ErrMismatch naming the block.
func TestRestoreBlockHashMismatch(t *testing.T) {
	data := repofixture.RandBytes(rand.New(rand.NewPCG(3, 4)), 200<<10)
	for _, c := range []struct {
		name  string
		block int // of region 1
	}{
		{"inside a chunk", 1},
		{"chunk edge", 3},
		{"hole", 10},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := repofixture.New(t, pass)
			im := &repofixture.Image{Size: 2*manifest.RegionSize + 10, Pieces: []repofixture.Piece{{Off: manifest.RegionSize, Data: data}}}
			d := f.Disk(0, im, func(ri int, m *manifest.RegionMap) {
				if ri == 1 {
					m.Blocks[c.block] = manifest.BlockHash([]byte("something else"))
				}
			})
			snap := f.Snapshot("s", d)
			r := f.Reopen()
			for _, readBack := range []bool{false, true} {
				_, err := New(r, &snap.Disks[0], Options{ReadBack: readBack}).Run(ctx, filepath.Join(t.TempDir(), "a.img"))
				if !errors.Is(err, ErrMismatch) {
					t.Fatalf("ReadBack %v: err = %v, want ErrMismatch", readBack, err)
				}
				want := manifest.RegionSize + c.block*manifest.BlockSize
				if !strings.Contains(err.Error(), "offset "+strconv.Itoa(want)) {
					t.Fatalf("ReadBack %v: error %q does not name the block at %d", readBack, err, want)
				}
			}
		})
	}
}

// TestClassify checks which blocks restore reads back: those that are
// neither inside one chunk nor a hole, including a short last block.
func TestClassify(t *testing.T) {
	const bs = manifest.BlockSize
	regionLen := int64(6*bs + 100)
	m := &manifest.RegionMap{
		Extents: []manifest.Extent{
			{Offset: 0, Length: 2 * bs},          // blocks 0, 1 inside
			{Offset: 2 * bs, Length: bs + 10},    // block 2 inside; block 3 starts here...
			{Offset: 3*bs + 10, Length: bs - 20}, // ...and ends in this one, then a hole: 3 is read back
			{Offset: 6*bs + 50, Length: 50},      // the short last block: part hole, read back
		},
		Blocks: make([]manifest.BlockSum, 7),
	}
	for _, b := range []int{4, 5} { // holes
		m.Blocks[b] = manifest.ZeroBlockHash(bs)
	}
	got, err := classify(m, regionLen, 0, false, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int32{3, 6}; !slices.Equal(got, want) {
		t.Fatalf("read back %v, want %v", got, want)
	}
	if got, err = classify(m, regionLen, 0, true, false); err != nil || !slices.Equal(got, []int32{0, 1, 2, 3, 6}) {
		t.Fatalf("read back all: %v (%v), want every block but the holes", got, err)
	}
	m.Extents[3] = manifest.Extent{Offset: 6 * bs, Length: 100} // the last block inside one chunk
	if got, err = classify(m, regionLen, 0, false, false); err != nil || !slices.Equal(got, []int32{3}) {
		t.Fatalf("read back %v (%v), want [3]", got, err)
	}
	m.Blocks[5] = manifest.BlockHash([]byte("x")) // a hole that was not zero at backup
	if _, err := classify(m, regionLen, 7*manifest.RegionSize, false, false); !errors.Is(err, ErrMismatch) ||
		!strings.Contains(err.Error(), strconv.Itoa(7*manifest.RegionSize+5*bs)) {
		t.Fatalf("hole with a non-zero hash: %v", err)
	}
}

// damageBlob flips a byte inside the stored blob of a chunk.
func damageBlob(t *testing.T, f *repofixture.Fixture, r *repo.Repo, id crypto.ID) {
	t.Helper()
	loc, ok := r.Index.Lookup(id)
	if !ok {
		t.Fatal("chunk not indexed")
	}
	p := filepath.Join(f.Dir, filepath.FromSlash(repo.PackName(loc.Pack)))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[loc.Offset+loc.Length/2] ^= 0x40
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A damaged chunk fails the restore with ErrAuth and says what to run, and
// its range is not downloaded again: the retry layer cannot help.
func TestRestoreDamagedChunk(t *testing.T) {
	f := repofixture.New(t, pass)
	im := repofixture.SampleImage()
	snap := f.Snapshot("s", f.Disk(0, im, nil))
	rc, clean := openVia(t, f)
	if _, err := New(rc, &snap.Disks[0], Options{Workers: 1}).Run(ctx, filepath.Join(t.TempDir(), "clean.img")); err != nil {
		t.Fatal(err)
	}
	damageBlob(t, f, f.Reopen(), f.ID(im.Pieces[2].Data[100<<10:400<<10]))
	r, faulty := openVia(t, f)
	_, err := New(r, &snap.Disks[0], Options{Workers: 1}).Run(ctx, filepath.Join(t.TempDir(), "a.img"))
	if !errors.Is(err, crypto.ErrAuth) || !strings.Contains(err.Error(), "run coffer check --read-data") {
		t.Fatalf("damaged chunk: err = %v, want ErrAuth", err)
	}
	if faulty.Ops("get") > clean.Ops("get") {
		t.Fatalf("%d gets with a damaged chunk, %d for a clean restore: the damaged range was fetched again", faulty.Ops("get"), clean.Ops("get"))
	}
}

func TestRestoreDamagedRegionMap(t *testing.T) {
	f := repofixture.New(t, pass)
	im := &repofixture.Image{Size: manifest.RegionSize, Pieces: []repofixture.Piece{{Off: 0, Data: []byte("a")}}}
	d := f.Disk(0, im, nil)
	snap := f.Snapshot("s", d)
	r := f.Reopen()
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
	f := repofixture.New(t, pass)
	im := &repofixture.Image{Size: 1 << 20, Pieces: []repofixture.Piece{{Off: 0, Data: []byte("indexed")}}}
	d := f.Disk(0, im, func(ri int, m *manifest.RegionMap) {
		m.Extents = append(m.Extents, manifest.Extent{Offset: 1000, Length: 5, ID: crypto.ID{9}})
	})
	snap := f.Snapshot("s", d)
	_, err := New(f.Reopen(), &snap.Disks[0], Options{}).Run(ctx, filepath.Join(t.TempDir(), "a.img"))
	if err == nil || !strings.Contains(err.Error(), "not in the index") {
		t.Fatalf("missing chunk: %v", err)
	}
}

func TestRestoreExtentLengthMismatch(t *testing.T) {
	f := repofixture.New(t, pass)
	im := &repofixture.Image{Size: 1 << 20, Pieces: []repofixture.Piece{{Off: 0, Data: []byte("twelve bytes")}}}
	d := f.Disk(0, im, func(ri int, m *manifest.RegionMap) { m.Extents[0].Length = 11 })
	snap := f.Snapshot("s", d)
	_, err := New(f.Reopen(), &snap.Disks[0], Options{}).Run(ctx, filepath.Join(t.TempDir(), "a.img"))
	if err == nil || !strings.Contains(err.Error(), "disk map says 11") {
		t.Fatalf("extent length mismatch: %v", err)
	}
}

func TestRestoreCanceled(t *testing.T) {
	f := repofixture.New(t, pass)
	snap := f.Snapshot("s", f.Disk(0, repofixture.SampleImage(), nil))
	r := f.Reopen()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := New(r, &snap.Disks[0], Options{}).Run(cctx, filepath.Join(t.TempDir(), "a.img"))
	if err == nil {
		t.Fatal("a canceled restore succeeded")
	}
}

// openVia opens the fixture's repository through a fault-injecting store
// under the retry layer, as the command line stacks them.
func openVia(t *testing.T, f *repofixture.Fixture) (*repo.Repo, *store.Faulty) {
	t.Helper()
	faulty := store.NewFaulty(f.Store)
	st := store.WithRetry(faulty, store.RetryPolicy{Attempts: 4, Base: time.Millisecond, Max: time.Millisecond}, clock.Real, nil)
	r, err := repo.Open(ctx, st, []byte(f.Passphrase))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return r, faulty
}

// breakOnce fails the first download of every long range after cut bytes,
// with a transient error, as a connection reset would.
type breakOnce struct {
	store.Store
	cut    int64
	mu     sync.Mutex
	broken map[string]bool
	n      int
}

func (b *breakOnce) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	key := name + "@" + strconv.FormatInt(off, 10)
	b.mu.Lock()
	first := length > 2*b.cut && !b.broken[key]
	if first {
		b.broken[key] = true
		b.n++
	}
	b.mu.Unlock()
	if !first {
		return b.Store.Get(ctx, name, off, length, fn)
	}
	return b.Store.Get(ctx, name, off, length, func(r io.Reader) error {
		err := fn(io.MultiReader(io.LimitReader(r, b.cut), iotest.ErrReader(store.ErrInjected)))
		if err == nil {
			return errors.New("the reader function ignored a broken download")
		}
		return err
	})
}

// A pack download that breaks part way is retried from the start of its
// range; the blobs already written are read past, and the output is whole.
func TestRestorePackDownloadBreaks(t *testing.T) {
	f := repofixture.New(t, pass)
	r := rand.New(rand.NewPCG(7, 8))
	// Many small chunks in one pack, so that a range holds several.
	im := &repofixture.Image{Size: manifest.RegionSize}
	for i := range 40 {
		im.Pieces = append(im.Pieces, repofixture.Piece{Off: int64(i) * 3 * manifest.BlockSize, Data: repofixture.RandBytes(r, 50<<10)})
	}
	snap := f.Snapshot("s", f.Disk(0, im, nil))
	rc := f.Reopen()
	clean, err := New(rc, &snap.Disks[0], Options{}).Run(ctx, filepath.Join(t.TempDir(), "clean.img"))
	if err != nil {
		t.Fatal(err)
	}
	bo := &breakOnce{Store: f.Store, cut: 300 << 10, broken: map[string]bool{}}
	st := store.WithRetry(bo, store.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond}, clock.Real, nil)
	rb, err := repo.Open(ctx, st, []byte(f.Passphrase))
	if err == nil {
		err = rb.LoadIndex(ctx, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "a.img")
	res, err := New(rb, &snap.Disks[0], Options{}).Run(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || bo.n == 0 {
		t.Fatalf("verified %v, %d downloads broken", res.Verified, bo.n)
	}
	checkOutput(t, out, im)
	if res.Written != clean.Written {
		t.Errorf("wrote %d bytes, %d without faults: blobs were written again after a retry", res.Written, clean.Written)
	}
}

// TestRestoreUnevenMapLists: every map list but a disk's last must name
// exactly 1024 region maps (FORMAT.md, "Disk maps"), so that a disk's lists
// are a function of its region maps. Lists that name the right number of
// regions in total but are split otherwise are refused.
func TestRestoreUnevenMapLists(t *testing.T) {
	f := repofixture.New(t, pass)
	const nr = manifest.ListFanout + 1
	im := &repofixture.Image{Size: nr * manifest.RegionSize}
	m := f.RegionMap(im, 0) // every region is a hole: the same map
	id := f.Blob(pack.TypeMeta, m.Encode())
	ids := slices.Repeat([]crypto.ID{id}, nr)
	hashes := slices.Repeat([]manifest.Hash{manifest.RegionHash(m.Blocks)}, nr)
	d := manifest.Disk{Index: 0, Name: "xvda", Size: im.Size, BlockSize: manifest.BlockSize, RegionSize: manifest.RegionSize,
		Digest: manifest.DiskDigest(im.Size, hashes).String()}
	for _, part := range [][]crypto.ID{ids[:1000], ids[1000:]} {
		d.Lists = append(d.Lists, f.Blob(pack.TypeMeta, manifest.EncodeList(part)).String())
	}
	snap := f.Snapshot("uneven", d)
	_, err := New(f.Reopen(), &snap.Disks[0], Options{}).Run(ctx, filepath.Join(t.TempDir(), "a.img"))
	if !errors.Is(err, manifest.ErrFormat) || !strings.Contains(err.Error(), "map list 0") || !strings.Contains(err.Error(), "names 1000 region maps") {
		t.Fatalf("uneven map lists: err = %v, want a malformed-list error naming list 0", err)
	}
}

// dirEntries lists the names in dir.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// A pack found damaged in the middle of a restore fails it, and leaves
// neither the output nor a temporary file; once the damage is gone (here:
// a restore of an intact copy), the same command succeeds.
func TestRestoreFailureLeavesNothing(t *testing.T) {
	f := repofixture.New(t, pass)
	im := repofixture.SampleImage()
	snap := f.Snapshot("s", f.Disk(0, im, nil))
	dir := t.TempDir()
	out := filepath.Join(dir, "disk.img")
	damageBlob(t, f, f.Reopen(), f.ID(im.Pieces[len(im.Pieces)-1].Data))
	_, err := New(f.Reopen(), &snap.Disks[0], Options{Workers: 1}).Run(ctx, out)
	if !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("damaged pack: err = %v, want ErrAuth", err)
	}
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Fatalf("a failed restore left %v", names)
	}
}

// cancelAfter cancels a context at the n-th ranged read of a pack.
type cancelAfter struct {
	store.Store
	n      atomic.Int32
	cancel context.CancelFunc
}

func (c *cancelAfter) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	if strings.HasPrefix(name, repo.DataPrefix) && c.n.Add(-1) == 0 {
		c.cancel()
	}
	return c.Store.Get(ctx, name, off, length, fn)
}

// An interrupted restore (the context is canceled, as Ctrl-C or SIGTERM
// do) removes its temporary file and writes nothing under the final name;
// running it again succeeds.
func TestRestoreInterruptedLeavesNothing(t *testing.T) {
	f := repofixture.New(t, pass)
	im := repofixture.SampleImage()
	snap := f.Snapshot("s", f.Disk(0, im, nil))
	dir := t.TempDir()
	out := filepath.Join(dir, "disk.img")
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ca := &cancelAfter{Store: f.Store, cancel: cancel}
	ca.n.Store(2)
	r, err := repo.Open(ctx, ca, []byte(f.Passphrase))
	if err == nil {
		err = r.LoadIndex(ctx, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(r, &snap.Disks[0], Options{Workers: 1}).Run(cctx, out); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted restore: err = %v, want context.Canceled", err)
	}
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Fatalf("an interrupted restore left %v", names)
	}
	if _, err := New(f.Reopen(), &snap.Disks[0], Options{}).Run(ctx, out); err != nil {
		t.Fatalf("the rerun: %v", err)
	}
	checkOutput(t, out, im)
	if names := dirEntries(t, dir); !slices.Equal(names, []string{"disk.img"}) {
		t.Fatalf("after the rerun the directory holds %v", names)
	}
}

// The temporary file of a killed restore (unlocked) is removed by the next
// restore to the same name; one still in use (locked) is left alone.
func TestRestoreRemovesStaleTemp(t *testing.T) {
	f := repofixture.New(t, pass)
	im := &repofixture.Image{Size: 3 * manifest.BlockSize, Pieces: []repofixture.Piece{{Off: 1, Data: []byte("data")}}}
	snap := f.Snapshot("s", f.Disk(0, im, nil))
	dir := t.TempDir()
	stale := filepath.Join(dir, ".disk.img"+tempInfix+"123")
	busy := filepath.Join(dir, ".disk.img"+tempInfix+"456")
	for _, p := range []string{stale, busy} {
		if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	held, err := os.Open(busy)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := unix.Flock(int(held.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := New(f.Reopen(), &snap.Disks[0], Options{}).Run(ctx, filepath.Join(dir, "disk.img")); err != nil {
		t.Fatal(err)
	}
	if names := dirEntries(t, dir); !slices.Equal(names, []string{".disk.img" + tempInfix + "456", "disk.img"}) {
		t.Fatalf("directory holds %v", names)
	}
}

// A delta restore onto an older copy fetches only the chunks over blocks
// that differ, clears what the snapshot has empty, resizes a file to the
// disk, and leaves an output equal to the snapshot; run again, it fetches
// nothing.
func TestDeltaRestore(t *testing.T) {
	f := repofixture.New(t, pass)
	im := repofixture.SampleImage()
	snap := f.Snapshot("vm", f.Disk(0, im, nil))
	r := f.Reopen()
	out := filepath.Join(t.TempDir(), "disk.img")
	full, err := New(r, &snap.Disks[0], Options{}).Run(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	// The copy drifts: a changed byte inside data, data in a hole the
	// snapshot has, and the file grown.
	w, err := os.OpenFile(out, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := im.Pieces[len(im.Pieces)/2]
	if _, err := w.WriteAt([]byte{^p.Data[7]}, p.Off+7); err != nil {
		t.Fatal(err)
	}
	hole := int64(-1)
	for off := int64(0); off+manifest.BlockSize <= im.Size; off += manifest.BlockSize {
		if !im.HasData(off, manifest.BlockSize) {
			hole = off
			break
		}
	}
	if hole < 0 {
		t.Fatal("the sample image has no empty block")
	}
	if _, err := w.WriteAt([]byte("stale data in a hole"), hole+100); err != nil {
		t.Fatal(err)
	}
	if err := w.Truncate(im.Size + 3*manifest.BlockSize); err != nil {
		t.Fatal(err)
	}
	w.Close()

	res, err := New(r, &snap.Disks[0], Options{Delta: true}).Run(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	checkOutput(t, out, im)
	if !res.Verified || res.Fetched <= 0 || res.Fetched*4 > full.Fetched || res.Reused < im.Size-4*manifest.BlockSize {
		t.Fatalf("delta restore: %+v; the full one fetched %d", res, full.Fetched)
	}
	// Interrupted, a delta restore leaves no file under the name, only the
	// copy aside, and the next one resumes on it.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := New(r, &snap.Disks[0], Options{Delta: true}).Run(cctx, out); err == nil {
		t.Fatal("a canceled delta restore succeeded")
	}
	aside := filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+deltaInfix)
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("an unfinished delta restore left %s: %v", out, err)
	}
	if _, err := os.Stat(aside); err != nil {
		t.Fatalf("the copy aside is gone: %v", err)
	}
	again, err := New(r, &snap.Disks[0], Options{Delta: true}).Run(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if again.Fetched != 0 || again.Written != 0 || again.Reused != im.Size {
		t.Fatalf("a second delta restore: %+v; want nothing fetched", again.Progress)
	}
	checkOutput(t, out, im)
	if _, err := os.Stat(aside); !os.IsNotExist(err) {
		t.Fatalf("the copy aside is left after the delta restore finished: %v", err)
	}
	if _, err := New(r, &snap.Disks[0], Options{Delta: true}).Run(ctx, out+".missing"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("delta onto a missing file: %v", err)
	}
}
