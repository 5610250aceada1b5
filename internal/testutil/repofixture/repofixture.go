package repofixture

import (
	"math/rand/v2"
	"os"
	"slices"
	"strings"
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

// UseInsecureKDF sets COFFER_INSECURE_TEST_KDF=1 for the whole process, so
// the key slots that New and the tests create use tiny argon2id parameters.
// Call it from a test package's init or TestMain, never from non-test code:
// such slots are easy to brute-force.
func UseInsecureKDF() { os.Setenv("COFFER_INSECURE_TEST_KDF", "1") }

// Piece is data at a disk offset.
type Piece struct {
	Off  int64
	Data []byte
}

// Image is a sparse disk image: its pieces, sorted and not overlapping; the
// rest of the disk is zero.
type Image struct {
	Size   int64
	Pieces []Piece
}

// Read returns n bytes of the image at off.
func (im *Image) Read(off, n int64) []byte {
	out := make([]byte, n)
	for _, p := range im.Pieces {
		lo, hi := max(off, p.Off), min(off+n, p.Off+int64(len(p.Data)))
		if lo < hi {
			copy(out[lo-off:hi-off], p.Data[lo-p.Off:hi-p.Off])
		}
	}
	return out
}

// HasData reports whether [off, off+n) touches a piece.
func (im *Image) HasData(off, n int64) bool {
	for _, p := range im.Pieces {
		if p.Off < off+n && off < p.Off+int64(len(p.Data)) {
			return true
		}
	}
	return false
}

// Fixture is a repository in a local store in a temporary directory, with
// an open pack and a pending index file. Its methods fail the test on error.
type Fixture struct {
	Repo       *repo.Repo
	Store      *store.Local
	Dir        string // the store's root
	Passphrase string

	t     testing.TB
	h     *crypto.IDHasher
	enc   *zstd.Encoder
	b     *pack.Builder
	file  index.File
	saved map[crypto.ID]bool
	n     int
}

// New creates a repository with the default configuration and one
// passphrase slot in a temporary directory.
func New(t testing.TB, passphrase string) *Fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenLocal(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(t.Context(), st, []byte(passphrase), repo.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { enc.Close() })
	return &Fixture{
		Repo: r, Store: st, Dir: dir, Passphrase: passphrase,
		t: t, h: r.Keys().NewIDHasher(), enc: enc, saved: map[crypto.ID]bool{},
	}
}

// ID returns the ID of a chunk's plaintext.
func (f *Fixture) ID(plain []byte) crypto.ID { return f.h.Sum(plain) }

// Blob stores a chunk (once) in the open pack and returns its ID. Every
// other blob is compressed. A pack is stored once it passes 1 MiB.
func (f *Fixture) Blob(typ uint8, plain []byte) crypto.ID {
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
	f.b.Add(typ, flags, id, len(plain), f.Repo.Keys().Data().Seal(nil, payload, pack.BlobAD(typ, id)))
	if f.b.Size() > 1<<20 {
		f.Flush()
	}
	return id
}

// Flush stores the open pack and records it for the pending index file.
func (f *Fixture) Flush() {
	f.t.Helper()
	if f.b == nil || f.b.Count() == 0 {
		return
	}
	buf, entries := f.b.Finish(f.Repo.Keys().Data())
	f.b = nil
	id := pack.Sum(buf)
	if err := f.Repo.SavePack(f.t.Context(), id, buf); err != nil {
		f.t.Fatal(err)
	}
	f.file.Packs = append(f.file.Packs, index.PackBlobs{Pack: id, Blobs: entries})
	f.Repo.Index.AddPack(id, entries)
}

// Commit stores the open pack and an index file for the packs stored since
// the last Commit.
func (f *Fixture) Commit() {
	f.t.Helper()
	f.Flush()
	if len(f.file.Packs) == 0 {
		return
	}
	if _, err := f.Repo.SaveIndexFile(f.t.Context(), &f.file); err != nil {
		f.t.Fatal(err)
	}
	f.file = index.File{}
}

// MaxChunk is the largest chunk RegionMap cuts.
const MaxChunk = 300 << 10

// RegionMap builds the map of region ri of an image, storing its chunks:
// each piece is cut at region boundaries and into chunks of at most
// MaxChunk bytes. The map itself is not stored.
func (f *Fixture) RegionMap(im *Image, ri int) *manifest.RegionMap {
	start := int64(ri) * manifest.RegionSize
	regionLen := min(manifest.RegionSize, im.Size-start)
	m := &manifest.RegionMap{}
	for _, p := range im.Pieces {
		lo, hi := max(start, p.Off), min(start+regionLen, p.Off+int64(len(p.Data)))
		for off := lo; off < hi; off += MaxChunk {
			end := min(off+MaxChunk, hi)
			id := f.Blob(pack.TypeData, p.Data[off-p.Off:end-p.Off])
			m.Extents = append(m.Extents, manifest.Extent{Offset: uint32(off - start), Length: uint32(end - off), ID: id})
		}
	}
	nb := manifest.RegionBlocks(im.Size, ri)
	m.Blocks = make([]manifest.BlockSum, nb)
	for b := 0; b < nb; b++ {
		off := start + int64(b)*manifest.BlockSize
		n := min(manifest.BlockSize, im.Size-off)
		if im.HasData(off, n) {
			m.Blocks[b] = manifest.BlockHash(im.Read(off, n))
		} else {
			m.Blocks[b] = manifest.ZeroBlockHash(int(n))
		}
	}
	return m
}

// Disk stores the chunks, region maps and map lists of an image and returns
// its snapshot entry, named "xvda". The digest is computed from the maps as
// built; edit, when not nil, may then change each region map before it is
// stored.
func (f *Fixture) Disk(idx int, im *Image, edit func(ri int, m *manifest.RegionMap)) manifest.Disk {
	var maps []crypto.ID
	var hashes []manifest.Hash
	for ri := 0; ri < manifest.Regions(im.Size); ri++ {
		m := f.RegionMap(im, ri)
		hashes = append(hashes, manifest.RegionHash(m.Blocks))
		if edit != nil {
			edit(ri, m)
		}
		maps = append(maps, f.Blob(pack.TypeMeta, m.Encode()))
	}
	d := manifest.Disk{
		Index: idx, Name: "xvda", Size: im.Size,
		BlockSize: manifest.BlockSize, RegionSize: manifest.RegionSize,
		Digest: manifest.DiskDigest(im.Size, hashes).String(),
		Lists:  []string{},
	}
	for i := 0; i < len(maps); i += manifest.ListFanout {
		id := f.Blob(pack.TypeMeta, manifest.EncodeList(maps[i:min(i+manifest.ListFanout, len(maps))]))
		d.Lists = append(d.Lists, id.String())
	}
	return d
}

// Snapshot commits the pending packs, stores a snapshot of the disks from
// host "test", and returns it loaded back. Its receipt is stored too when
// it can be made: a snapshot a test broke on purpose (a chunk not in the
// index, malformed map lists) gets none.
func (f *Fixture) Snapshot(name string, disks ...manifest.Disk) *repo.SnapshotInfo {
	f.t.Helper()
	f.Commit()
	s := &manifest.Snapshot{
		Version: manifest.SnapshotVersion, Time: time.Now().UTC(), Host: "test", Name: name,
		Source: manifest.Source{Kind: "image"}, Disks: disks,
	}
	b, err := s.Marshal()
	if err != nil {
		f.t.Fatal(err)
	}
	name, err = f.Repo.SaveSealed(f.t.Context(), repo.SnapshotsPrefix, b, manifest.SnapshotAD)
	if err != nil {
		f.t.Fatal(err)
	}
	id := strings.TrimPrefix(name, repo.SnapshotsPrefix)
	if rc, err := f.Repo.NewReceipt(f.t.Context(), id, s); err == nil {
		if _, err := f.Repo.SaveReceipt(f.t.Context(), rc); err != nil {
			f.t.Fatal(err)
		}
	}
	got, err := f.Repo.FindSnapshot(f.t.Context(), id, "")
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

// Open opens the repository afresh, without loading its index.
func (f *Fixture) Open() *repo.Repo {
	f.t.Helper()
	r, err := repo.Open(f.t.Context(), f.Store, []byte(f.Passphrase))
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// Reopen opens the repository afresh and loads its index.
func (f *Fixture) Reopen() *repo.Repo {
	f.t.Helper()
	r := f.Open()
	if err := r.LoadIndex(f.t.Context(), nil); err != nil {
		f.t.Fatal(err)
	}
	return r
}

// RandBytes returns n bytes from r.
func RandBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// SampleImage is a disk of three regions, the last one partial and ending
// mid-block, with data at its start, across blocks, across the first region
// boundary, repeated (a chunk used twice) and at its very end. It is the
// same on every call.
func SampleImage() *Image {
	r := rand.New(rand.NewPCG(1, 2))
	size := int64(2*manifest.RegionSize + 3*manifest.BlockSize + 123)
	twice := RandBytes(r, 100<<10)
	im := &Image{Size: size, Pieces: []Piece{
		{0, RandBytes(r, 1000)},
		{5*manifest.BlockSize + 7, RandBytes(r, 200<<10)},
		{manifest.RegionSize - 100<<10, RandBytes(r, 700<<10)},
		{manifest.RegionSize + 2<<20, twice},
		{manifest.RegionSize + 3<<20, twice},
		{size - 5000, RandBytes(r, 5000)},
	}}
	slices.SortFunc(im.Pieces, func(a, b Piece) int { return int(a.Off - b.Off) })
	return im
}
