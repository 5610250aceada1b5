package diskread

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

func init() { repofixture.UseInsecureKDF() }

const (
	pass = "diskread test passphrase"
	bs   = manifest.BlockSize
	rs   = manifest.RegionSize
)

// testImage is a disk of three regions, the last one partial and ending
// mid-block, with: data at its start; a piece holding a whole zero block
// and a shorter run of zeros; data across the first region boundary; one
// chunk used twice; 4 MiB that diskgen generated (text, random and zero
// regions); and data up to the very last byte.
func testImage(t testing.TB) *repofixture.Image {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 8))
	size := int64(2*rs + 3*bs + 4567)
	zeroy := repofixture.RandBytes(r, 400<<10)
	clear(zeroy[bs : 2*bs])           // block 7 of the disk, inside a chunk
	clear(zeroy[3*bs+100 : 3*bs+900]) // zeros within a data block
	twice := repofixture.RandBytes(r, 100<<10)
	pieces := []repofixture.Piece{
		{Off: 0, Data: repofixture.RandBytes(r, 1000)},
		{Off: 6 * bs, Data: zeroy},
		{Off: rs - 100<<10, Data: repofixture.RandBytes(r, 700<<10)},
		{Off: rs + 2<<20, Data: twice},
		{Off: rs + 3<<20, Data: twice},
		{Off: size - 5000, Data: repofixture.RandBytes(r, 5000)},
	}
	pieces = append(pieces, generated(t, rs+8<<20, 4<<20)...)
	slices.SortFunc(pieces, func(a, b repofixture.Piece) int { return int(a.Off - b.Off) })
	return &repofixture.Image{Size: size, Pieces: pieces}
}

// generated returns the non-zero MiBs of an image of n bytes that diskgen
// generates, placed at disk offset at.
func generated(t testing.TB, at, n int64) []repofixture.Piece {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gen.img")
	if err := diskgen.Generate(path, n, 42, diskgen.Options{Mix: &diskgen.Mix{Zero: 0.25, Random: 0.25}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []repofixture.Piece
	for off := int64(0); off < n; off += diskgen.RegionSize {
		p := b[off:min(off+diskgen.RegionSize, n)]
		if !bytes.Equal(p, make([]byte, len(p))) {
			out = append(out, repofixture.Piece{Off: at + off, Data: p})
		}
	}
	return out
}

// env is a repository holding one snapshot of an image, opened afresh
// through a counting store.
type env struct {
	f     *repofixture.Fixture
	im    *repofixture.Image
	disk  *manifest.Disk
	r     *repo.Repo
	count *store.Counting
}

func newEnv(t testing.TB, im *repofixture.Image) *env {
	t.Helper()
	f := repofixture.New(t, pass)
	snap := f.Snapshot("vm", f.Disk(0, im, nil))
	e := &env{f: f, im: im, disk: &snap.Disks[0]}
	e.reopen(t, nil)
	return e
}

// reopen opens the repository afresh through a counting store over st (the
// fixture's store when nil), and loads its index.
func (e *env) reopen(t testing.TB, st store.Store) {
	t.Helper()
	if st == nil {
		st = e.f.Store
	}
	e.count = store.NewCounting(st)
	r, err := repo.Open(t.Context(), e.count, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	e.r = r
}

func (e *env) open(t testing.TB, ctx context.Context, opt Options) *Disk {
	t.Helper()
	d, err := Open(ctx, e.r, e.disk, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// chunkIDs returns the distinct chunks of the image's snapshot.
func (e *env) chunkIDs(t testing.TB) map[crypto.ID]bool {
	t.Helper()
	ids, err := e.r.DiskRegions(t.Context(), e.disk)
	if err != nil {
		t.Fatal(err)
	}
	out := map[crypto.ID]bool{}
	for ri, id := range ids {
		b, err := e.r.LoadBlob(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		m, err := manifest.DecodeRegionMap(b, min(rs, e.im.Size-int64(ri)*rs))
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range m.Extents {
			out[x.ID] = true
		}
	}
	return out
}

// checkRead reads n bytes at off from d and compares them with the image.
func checkRead(t testing.TB, d *Disk, im *repofixture.Image, off, n int64) {
	t.Helper()
	p := make([]byte, n)
	got, err := d.ReadAt(p, off)
	want := min(n, max(im.Size-off, 0))
	if int64(got) != want {
		t.Fatalf("ReadAt(%d bytes at %d) = %d bytes, want %d (err %v)", n, off, got, want, err)
	}
	switch {
	case want < n && err != io.EOF:
		t.Fatalf("ReadAt(%d bytes at %d) past the end: err %v, want io.EOF", n, off, err)
	case want == n && err != nil:
		t.Fatalf("ReadAt(%d bytes at %d): %v", n, off, err)
	}
	if !bytes.Equal(p[:got], im.Read(off, int64(got))) {
		t.Fatalf("ReadAt(%d bytes at %d) differs from the image at %d", n, off, firstDiff(p[:got], im.Read(off, int64(got)))+off)
	}
}

func firstDiff(a, b []byte) int64 {
	for i := range a {
		if a[i] != b[i] {
			return int64(i)
		}
	}
	return -1
}

// gate is a store whose pack reads block, once armed, until their context
// ends; it counts the reads it blocked.
type gate struct {
	store.Store
	armed   atomic.Bool
	blocked atomic.Int64
	started chan struct{}
}

func newGate(st store.Store) *gate { return &gate{Store: st, started: make(chan struct{}, 100)} }

func (g *gate) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	if g.armed.Load() && len(name) > len(repo.DataPrefix) && name[:len(repo.DataPrefix)] == repo.DataPrefix {
		g.blocked.Add(1)
		select {
		case g.started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}
	return g.Store.Get(ctx, name, off, length, fn)
}
