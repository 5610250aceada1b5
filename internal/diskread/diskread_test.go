package diskread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

// Random reads of random lengths at random offsets, and reads placed at the
// edges (chunks, regions, holes, the last partial block, the end), return
// the image's bytes.
func TestReadAtMatchesImage(t *testing.T) {
	e := newEnv(t, testImage(t))
	d := e.open(t, t.Context(), Options{})
	if d.Size() != e.im.Size {
		t.Fatalf("Size() = %d, want %d", d.Size(), e.im.Size)
	}
	size := e.im.Size
	edges := [][2]int64{
		{0, 1}, {0, 4096}, {999, 2}, {6*bs - 10, 20}, {7 * bs, bs}, {7*bs - 1, bs + 2},
		{rs - 10, 20}, {rs - 100<<10 - 1, 3 << 20}, {rs + 2<<20 + 50<<10, 1 << 20},
		{size - bs - 7, bs + 7}, {size - 1, 1}, {size - 4000, 4000}, {size - 10, 100},
		{rs - 3<<20, 70 << 20}, {0, size},
	}
	for _, c := range edges {
		checkRead(t, d, e.im, c[0], c[1])
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		off := r.Int64N(size)
		n := 1 + r.Int64N(3<<20)
		if r.IntN(4) == 0 {
			n = 1 + r.Int64N(5000)
		}
		checkRead(t, d, e.im, off, n)
	}
}

func TestReadAtEnds(t *testing.T) {
	e := newEnv(t, testImage(t))
	d := e.open(t, t.Context(), Options{})
	if n, err := d.ReadAt(make([]byte, 10), e.im.Size); n != 0 || err != io.EOF {
		t.Fatalf("read at the end: %d, %v; want 0, io.EOF", n, err)
	}
	if n, err := d.ReadAt(nil, e.im.Size+5); n != 0 || err != nil {
		t.Fatalf("empty read past the end: %d, %v; want 0, nil", n, err)
	}
	if _, err := d.ReadAt(make([]byte, 10), -1); err == nil || !strings.Contains(err.Error(), "negative offset") {
		t.Fatalf("read at -1: %v", err)
	}
	if n, err := d.ReadAt(nil, 5); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
}

// Concurrent readers get the right bytes, and with a cache large enough
// for the disk no chunk is fetched twice.
func TestConcurrentReaders(t *testing.T) {
	e := newEnv(t, testImage(t))
	d := e.open(t, t.Context(), Options{Workers: 3})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for range 60 {
				off := r.Int64N(e.im.Size)
				n := 1 + r.Int64N(2<<20)
				p := make([]byte, n)
				got, err := d.ReadAt(p, off)
				if err != nil && err != io.EOF {
					errs <- err
					return
				}
				if want := e.im.Read(off, int64(got)); string(p[:got]) != string(want) {
					errs <- fmt.Errorf("reader %d: %d bytes at %d differ", g, n, off)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st, chunks := d.Stats(), len(e.chunkIDs(t)); st.FetchedChunks > int64(chunks) {
		t.Fatalf("fetched %d chunks, but the disk has %d: a chunk was fetched twice (%+v)", st.FetchedChunks, chunks, st)
	}
}

// Readers that miss the same chunk at once fetch it once.
func TestConcurrentMissesFetchOnce(t *testing.T) {
	e := newEnv(t, testImage(t))
	d := e.open(t, t.Context(), Options{Readahead: -1})
	off := int64(rs - 50<<10) // inside one chunk of at most 300 KiB
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 16 {
		wg.Go(func() {
			<-start
			p := make([]byte, 100)
			if _, err := d.ReadAt(p, off); err != nil {
				t.Error(err)
			}
			if string(p) != string(e.im.Read(off, 100)) {
				t.Error("wrong bytes")
			}
		})
	}
	close(start)
	wg.Wait()
	st := d.Stats()
	if st.FetchedChunks != 1 || st.CacheMisses != 1 || st.CacheHits != 15 {
		t.Fatalf("16 readers of one chunk: %+v; want one fetch, one miss, 15 hits", st)
	}
}

// A cache too small for any chunk still gives the right bytes (and turns
// readahead off).
func TestTinyCache(t *testing.T) {
	e := newEnv(t, testImage(t))
	d := e.open(t, t.Context(), Options{CacheBytes: 1, Workers: 2})
	r := rand.New(rand.NewPCG(5, 6))
	for range 50 {
		checkRead(t, d, e.im, r.Int64N(e.im.Size), 1+r.Int64N(1<<20))
	}
	for off := int64(rs - 200<<10); off < rs+1<<20; off += 64 << 10 { // sequential
		checkRead(t, d, e.im, off, 64<<10)
	}
	if st := d.Stats(); st.CachedBytes != 0 || st.CacheMisses == 0 {
		t.Fatalf("tiny cache: %+v", st)
	}
}

// A small cache evicts, stays within its bound, and reads stay right.
func TestCacheBound(t *testing.T) {
	e := newEnv(t, testImage(t))
	const limit = 700 << 10
	d := e.open(t, t.Context(), Options{CacheBytes: limit})
	r := rand.New(rand.NewPCG(11, 12))
	for range 100 {
		checkRead(t, d, e.im, r.Int64N(e.im.Size), 1+r.Int64N(600<<10))
		if st := d.Stats(); st.CachedBytes > limit {
			t.Fatalf("cache holds %d bytes, limit %d", st.CachedBytes, limit)
		}
	}
	// A chunk read twice in a row comes from the cache.
	before := d.Stats()
	checkRead(t, d, e.im, 6*bs, 1000)
	checkRead(t, d, e.im, 6*bs+1000, 1000)
	if after := d.Stats(); after.FetchedChunks-before.FetchedChunks > 1 || after.CacheHits == before.CacheHits {
		t.Fatalf("second read of a chunk was not a cache hit: %+v then %+v", before, after)
	}
}

// A sequential reader makes the readahead fetch the next chunks, so that
// reading them is all cache hits.
func TestReadahead(t *testing.T) {
	e := newEnv(t, testImage(t))
	d := e.open(t, t.Context(), Options{})
	base := int64(rs + 8<<20) // the generated 4 MiB
	checkRead(t, d, e.im, base, 64<<10)
	checkRead(t, d, e.im, base+64<<10, 64<<10) // sequential: readahead of at least 1 MiB starts
	d.bg.Wait()                                // the readahead is done (nothing else reads)
	before := d.Stats()
	if before.FetchedChunks <= 2 {
		t.Fatalf("no readahead after two sequential reads: %+v", before)
	}
	d.ra.mu.Lock()
	d.ra.started = false // the next read is not part of the run: no new readahead
	d.ra.mu.Unlock()
	checkRead(t, d, e.im, base+128<<10, 1<<20-128<<10)
	if after := d.Stats(); after.CacheMisses != before.CacheMisses || after.FetchedBytes != before.FetchedBytes {
		t.Fatalf("reading what the readahead fetched missed the cache: %+v then %+v", before, after)
	}
	// A jump elsewhere is a random read: nothing is read ahead of it.
	d.bg.Wait()
	before = d.Stats()
	checkRead(t, d, e.im, rs-100<<10, 100)
	d.bg.Wait()
	if after := d.Stats(); after.FetchedChunks != before.FetchedChunks+1 {
		t.Fatalf("a random read fetched %d chunks, want 1", after.FetchedChunks-before.FetchedChunks)
	}
}

// Cancelling the context the Disk was opened with stops the readahead and
// every fetch in progress; reads then fail with ErrClosed.
func TestCancelStopsReadahead(t *testing.T) {
	e := newEnv(t, testImage(t))
	g := newGate(e.f.Store)
	e.reopen(t, g)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	d := e.open(t, ctx, Options{Workers: 2})
	base := int64(rs + 8<<20)
	checkRead(t, d, e.im, base, 4096)
	g.armed.Store(true)
	// The second read is sequential and served from the cache (the first
	// fetched its chunk); it starts readahead, whose fetches block.
	checkRead(t, d, e.im, base+4096, 4096)
	<-g.started
	cancel()
	done := make(chan struct{})
	go func() { d.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("readahead still running 20 s after its context ended")
	}
	n := g.blocked.Load()
	if _, err := d.ReadAt(make([]byte, 10), base+1<<20); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "disk 0 (xvda)") {
		t.Fatalf("read after cancel: %v", err)
	}
	if _, err := d.Extents(t.Context(), 0, 10); !errors.Is(err, ErrClosed) {
		t.Fatalf("extents after cancel: %v", err)
	}
	if g.blocked.Load() != n {
		t.Fatal("a fetch started after the context ended")
	}
}

// Close stops the Disk: later reads fail with ErrClosed.
func TestClose(t *testing.T) {
	e := newEnv(t, testImage(t))
	d := e.open(t, t.Context(), Options{})
	checkRead(t, d, e.im, 0, 100)
	checkRead(t, d, e.im, 100, 100)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadAt(make([]byte, 10), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
}

// damageChunk flips a byte inside the stored blob of a chunk.
func damageChunk(t *testing.T, e *env, id crypto.ID) {
	t.Helper()
	loc, ok := e.r.Index.Lookup(id)
	if !ok {
		t.Fatal("chunk not indexed")
	}
	p := filepath.Join(e.f.Dir, filepath.FromSlash(repo.PackName(loc.Pack)))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[loc.Offset+loc.Length/2] ^= 0x40
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A damaged chunk fails the reads that need it with an error naming the
// chunk and the disk offset, never wrong bytes; the rest of the disk reads.
func TestDamagedChunk(t *testing.T) {
	e := newEnv(t, testImage(t))
	piece := e.im.Pieces[2] // 700 KiB across the region boundary
	first := int64(rs) - piece.Off
	id := e.f.ID(piece.Data[:first]) // its first chunk ends at the boundary
	damageChunk(t, e, id)
	d := e.open(t, t.Context(), Options{})
	for _, off := range []int64{piece.Off, piece.Off + 5000, piece.Off - 10} {
		p := make([]byte, 20000)
		n, err := d.ReadAt(p, off)
		if err == nil {
			t.Fatalf("read of a damaged chunk at %d succeeded", off)
		}
		if n != 0 || !errors.Is(err, crypto.ErrAuth) || !strings.Contains(err.Error(), id.String()) ||
			!strings.Contains(err.Error(), "disk offset "+strconv.FormatInt(piece.Off, 10)) || !strings.Contains(err.Error(), "coffer check") {
			t.Fatalf("read at %d: %d bytes, %v", off, n, err)
		}
	}
	// The next chunk of the same piece, in the same pack, is fine.
	checkRead(t, d, e.im, piece.Off+first, 1000)
	if _, err := d.Extents(t.Context(), 0, e.im.Size); err != nil {
		t.Fatalf("extents need no chunk: %v", err)
	}
}

// A missing pack gives an error that names the chunk and says data is lost.
func TestMissingPack(t *testing.T) {
	e := newEnv(t, testImage(t))
	ids, err := e.r.DiskRegions(t.Context(), e.disk)
	if err != nil {
		t.Fatal(err)
	}
	meta := map[pack.ID]bool{} // the packs holding region maps
	var off int64
	var chunk manifest.Extent
	for ri, id := range ids {
		loc, _ := e.r.Index.Lookup(id)
		meta[loc.Pack] = true
		b, err := e.r.LoadBlob(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		m, err := manifest.DecodeRegionMap(b, min(rs, e.im.Size-int64(ri)*rs))
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range m.Extents {
			if l, _ := e.r.Index.Lookup(x.ID); chunk.Length == 0 && !meta[l.Pack] {
				off, chunk = int64(ri)*rs+int64(x.Offset), x
			}
		}
	}
	if chunk.Length == 0 {
		t.Fatal("every pack holds a region map")
	}
	loc, _ := e.r.Index.Lookup(chunk.ID)
	if err := os.Remove(filepath.Join(e.f.Dir, filepath.FromSlash(repo.PackName(loc.Pack)))); err != nil {
		t.Fatal(err)
	}
	d := e.open(t, t.Context(), Options{})
	_, err = d.ReadAt(make([]byte, 100), off)
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "missing") || !strings.Contains(err.Error(), chunk.ID.String()) ||
		!strings.Contains(err.Error(), "disk offset "+strconv.FormatInt(off, 10)) {
		t.Fatalf("read from a missing pack: %v", err)
	}
}

// A damaged region map is an error naming the region, and bad disk records
// are refused at Open.
func TestBadMaps(t *testing.T) {
	e := newEnv(t, testImage(t))
	bad := *e.disk
	bad.BlockSize = 4096
	if _, err := Open(t.Context(), e.r, &bad, Options{}); !errors.Is(err, manifest.ErrFormat) {
		t.Fatalf("block size 4096: %v", err)
	}
	bad = *e.disk
	bad.Size = -1
	if _, err := Open(t.Context(), e.r, &bad, Options{}); !errors.Is(err, manifest.ErrFormat) {
		t.Fatalf("negative size: %v", err)
	}
	ids, err := e.r.DiskRegions(t.Context(), e.disk)
	if err != nil {
		t.Fatal(err)
	}
	damageChunk(t, e, ids[1])
	if _, err := Open(t.Context(), e.r, e.disk, Options{}); err != nil {
		t.Fatalf("Open reads no region map: %v", err)
	}
	d := e.open(t, t.Context(), Options{})
	checkRead(t, d, e.im, 0, 1000)
	if _, err := d.ReadAt(make([]byte, 10), rs+5); !errors.Is(err, crypto.ErrAuth) || !strings.Contains(err.Error(), "region 1 map") {
		t.Fatalf("read in a region whose map is damaged: %v", err)
	}
	if _, err := d.Extents(t.Context(), 0, e.im.Size); !errors.Is(err, crypto.ErrAuth) {
		t.Fatalf("extents over a damaged map: %v", err)
	}
}

// A damaged map list fails Open with an error naming it.
func TestBadList(t *testing.T) {
	e := newEnv(t, testImage(t))
	lists, err := e.disk.ListIDs()
	if err != nil {
		t.Fatal(err)
	}
	damageChunk(t, e, lists[0])
	if _, err := Open(t.Context(), e.r, e.disk, Options{}); !errors.Is(err, crypto.ErrAuth) || !strings.Contains(err.Error(), "map list 0") {
		t.Fatalf("Open with a damaged map list: %v", err)
	}
}

// Open and the first read of a 16 GiB disk load the map list, one region
// map and one chunk range: nothing proportional to the disk.
func TestFirstReadLoadsLittle(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	const size = 16 << 30
	im := &repofixture.Image{Size: size, Pieces: []repofixture.Piece{
		{Off: 3 << 20, Data: repofixture.RandBytes(r, 300<<10)},
		{Off: 9<<30 + 12345, Data: repofixture.RandBytes(r, 200<<10)},
		{Off: size - 1000, Data: repofixture.RandBytes(r, 1000)},
	}}
	e := newEnv(t, im)
	before := e.count.Requests()
	d := e.open(t, t.Context(), Options{})
	if got := e.count.Requests() - before; got != 1 {
		t.Fatalf("Open made %d requests, want 1 (the map list)", got)
	}
	checkRead(t, d, im, 9<<30+20000, 4096)
	if got := e.count.Requests() - before; got != 3 {
		t.Fatalf("Open and the first read made %d requests, want 3 (list, map, chunk)", got)
	}
	if st := d.Stats(); st.MapsLoaded != 1 || st.FetchedChunks != 1 {
		t.Fatalf("first read: %+v", st)
	}
}

// A reader whose context ends stops waiting even while its fetch blocks;
// Close then ends the fetch.
func TestReadAtContextCancel(t *testing.T) {
	e := newEnv(t, testImage(t))
	g := newGate(e.f.Store)
	e.reopen(t, g)
	d := e.open(t, t.Context(), Options{Readahead: -1})
	checkRead(t, d, e.im, 0, 100) // region 0's map is cached
	g.armed.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	res := make(chan error, 1)
	go func() {
		_, err := d.ReadAtContext(ctx, make([]byte, 100), 6*bs)
		res <- err
	}()
	<-g.started
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("read whose context ended: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// A region map that records data in a block no chunk covers is refused:
// reading zeros there would not give back what was backed up.
func TestMapHoleWithData(t *testing.T) {
	im := testImage(t)
	f := repofixture.New(t, pass)
	disk := f.Disk(0, im, func(ri int, m *manifest.RegionMap) {
		if ri == 0 {
			m.Extents = m.Extents[1:] // drop the 1000 bytes at 0
		}
	})
	snap := f.Snapshot("vm", disk)
	d, err := Open(t.Context(), f.Reopen(), &snap.Disks[0], Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.ReadAt(make([]byte, 10), 3*rs/2); err != nil {
		t.Fatalf("region 1 is fine: %v", err)
	}
	_, err = d.ReadAt(make([]byte, 10), 2*bs)
	if !errors.Is(err, manifest.ErrFormat) || !strings.Contains(err.Error(), "block at disk offset 0 held data") {
		t.Fatalf("read in a region whose map lost a chunk: %v", err)
	}
}
