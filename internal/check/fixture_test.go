package check

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/index"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
)

// This file builds repositories by hand, with the repo, pack, index and
// manifest APIs only, so check is tested independently of the backup
// pipeline. (The same fixture serves the restore tests.)

func init() { os.Setenv("COFFER_INSECURE_TEST_KDF", "1") }

var ctx = context.Background()

const pass = "check test passphrase"

// piece is data at a disk offset; the rest of the disk is zero.
type piece struct {
	off  int64
	data []byte
}

// image is a sparse disk image.
type image struct {
	size   int64
	pieces []piece // sorted, not overlapping
}

// read returns n bytes of the image at off.
func (im *image) read(off, n int64) []byte {
	out := make([]byte, n)
	for _, p := range im.pieces {
		lo, hi := max(off, p.off), min(off+n, p.off+int64(len(p.data)))
		if lo < hi {
			copy(out[lo-off:hi-off], p.data[lo-p.off:hi-p.off])
		}
	}
	return out
}

// hasData reports whether [off, off+n) touches a piece.
func (im *image) hasData(off, n int64) bool {
	for _, p := range im.pieces {
		if p.off < off+n && off < p.off+int64(len(p.data)) {
			return true
		}
	}
	return false
}

type fixture struct {
	t     *testing.T
	r     *repo.Repo
	st    *store.Local
	dir   string
	h     *crypto.IDHasher
	enc   *zstd.Encoder
	b     *pack.Builder
	file  index.File
	saved map[crypto.ID]bool
	n     int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenLocal(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(ctx, st, []byte(pass), repo.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, r: r, st: st, dir: dir, h: r.Keys().NewIDHasher(), enc: enc, saved: map[crypto.ID]bool{}}
}

// blob stores a chunk (once) and returns its ID. Every other blob is
// compressed.
func (f *fixture) blob(typ uint8, plain []byte) crypto.ID {
	id := f.h.Sum(plain)
	if f.saved[id] {
		return id
	}
	f.saved[id] = true
	if f.b == nil {
		f.b = pack.NewBuilder(nil)
	}
	payload, flags := plain, uint8(0)
	if f.n%2 == 1 {
		payload, flags = f.enc.EncodeAll(plain, nil), pack.FlagZstd
	}
	f.n++
	f.b.Add(typ, flags, id, len(plain), f.r.Keys().Data().Seal(nil, payload, pack.BlobAD(typ, id)))
	if f.b.Size() > 1<<20 {
		f.flush()
	}
	return id
}

// flush stores the open pack and records it for the index file.
func (f *fixture) flush() {
	if f.b == nil || f.b.Count() == 0 {
		return
	}
	buf, entries := f.b.Finish(f.r.Keys().Data())
	f.b = nil
	id := pack.Sum(buf)
	if err := f.r.SavePack(ctx, id, buf); err != nil {
		f.t.Fatal(err)
	}
	f.file.Packs = append(f.file.Packs, index.PackBlobs{Pack: id, Blobs: entries})
	f.r.Index.AddPack(id, entries)
}

// commit stores the pending packs and an index file for them.
func (f *fixture) commit() {
	f.flush()
	if len(f.file.Packs) == 0 {
		return
	}
	if _, err := f.r.SaveIndexFile(ctx, &f.file); err != nil {
		f.t.Fatal(err)
	}
	f.file = index.File{}
}

// regionMap builds the map of region ri of an image, storing its chunks:
// each piece is cut at region boundaries and into chunks of at most
// maxChunk bytes.
func (f *fixture) regionMap(im *image, ri int) *manifest.RegionMap {
	const maxChunk = 300 << 10
	start := int64(ri) * manifest.RegionSize
	regionLen := min(manifest.RegionSize, im.size-start)
	m := &manifest.RegionMap{}
	for _, p := range im.pieces {
		lo, hi := max(start, p.off), min(start+regionLen, p.off+int64(len(p.data)))
		for off := lo; off < hi; off += maxChunk {
			end := min(off+maxChunk, hi)
			id := f.blob(pack.TypeData, p.data[off-p.off:end-p.off])
			m.Extents = append(m.Extents, manifest.Extent{Offset: uint32(off - start), Length: uint32(end - off), ID: id})
		}
	}
	nb := manifest.RegionBlocks(im.size, ri)
	m.Blocks = make([]manifest.Hash, nb)
	for b := 0; b < nb; b++ {
		off := start + int64(b)*manifest.BlockSize
		n := min(manifest.BlockSize, im.size-off)
		if im.hasData(off, n) {
			m.Blocks[b] = manifest.BlockHash(im.read(off, n))
		} else {
			m.Blocks[b] = manifest.ZeroBlockHash(int(n))
		}
	}
	return m
}

// disk stores the chunks, region maps and lists of an image and returns its
// snapshot entry. edit, when not nil, may change each region map before it
// is stored.
func (f *fixture) disk(idx int, im *image, edit func(ri int, m *manifest.RegionMap)) manifest.Disk {
	var maps []crypto.ID
	var hashes []manifest.Hash
	for ri := 0; ri < manifest.Regions(im.size); ri++ {
		m := f.regionMap(im, ri)
		hashes = append(hashes, manifest.RegionHash(m.Blocks))
		if edit != nil {
			edit(ri, m)
		}
		maps = append(maps, f.blob(pack.TypeMeta, m.Encode()))
	}
	d := manifest.Disk{
		Index: idx, Name: "xvda", Size: im.size,
		BlockSize: manifest.BlockSize, RegionSize: manifest.RegionSize,
		Digest: manifest.DiskDigest(im.size, hashes).String(),
		Lists:  []string{},
	}
	for i := 0; i < len(maps); i += manifest.ListFanout {
		id := f.blob(pack.TypeMeta, manifest.EncodeList(maps[i:min(i+manifest.ListFanout, len(maps))]))
		d.Lists = append(d.Lists, id.String())
	}
	return d
}

// snapshot stores a snapshot of the images and returns it loaded back.
func (f *fixture) snapshot(name string, disks ...manifest.Disk) *repo.SnapshotInfo {
	f.commit()
	s := &manifest.Snapshot{
		Version: manifest.SnapshotVersion, Time: time.Now().UTC(), Host: "test", Name: name,
		Source: manifest.Source{Kind: "image"}, Disks: disks,
	}
	id, err := f.r.SaveSnapshot(ctx, s)
	if err != nil {
		f.t.Fatal(err)
	}
	got, err := f.r.FindSnapshot(ctx, id, "")
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

// reopen opens the repository afresh and loads its index.
func (f *fixture) reopen() *repo.Repo {
	f.t.Helper()
	r, err := repo.Open(ctx, f.st, []byte(pass))
	if err != nil {
		f.t.Fatal(err)
	}
	if err := r.LoadIndex(ctx, nil); err != nil {
		f.t.Fatal(err)
	}
	return r
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// sampleImage is a disk of three regions, the last one partial and ending
// mid-block, with data at its start, across blocks, across the first region
// boundary, repeated (a chunk used twice) and at its very end.
func sampleImage() *image {
	r := rand.New(rand.NewPCG(1, 2))
	size := int64(2*manifest.RegionSize + 3*manifest.BlockSize + 123)
	twice := randBytes(r, 100<<10)
	im := &image{size: size, pieces: []piece{
		{0, randBytes(r, 1000)},
		{5*manifest.BlockSize + 7, randBytes(r, 200<<10)},
		{manifest.RegionSize - 100<<10, randBytes(r, 700<<10)},
		{manifest.RegionSize + 2<<20, twice},
		{manifest.RegionSize + 3<<20, twice},
		{size - 5000, randBytes(r, 5000)},
	}}
	slices.SortFunc(im.pieces, func(a, b piece) int { return int(a.off - b.off) })
	return im
}
