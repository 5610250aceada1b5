package check

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/index"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

func init() { repofixture.UseInsecureKDF() }

var ctx = context.Background()

const pass = "check test passphrase"

// setup builds a repository with one snapshot of a two-region disk whose
// chunks fill several packs, and returns it with the snapshot.
func setup(t *testing.T, edit func(ri int, m *manifest.RegionMap)) (*repofixture.Fixture, *repo.SnapshotInfo) {
	t.Helper()
	f := repofixture.New(t, pass)
	r := rand.New(rand.NewPCG(7, 8))
	im := &repofixture.Image{Size: manifest.RegionSize + 40*manifest.BlockSize, Pieces: []repofixture.Piece{
		{Off: 0, Data: repofixture.RandBytes(r, 900<<10)},
		{Off: manifest.RegionSize - 1000, Data: repofixture.RandBytes(r, 1500<<10)},
		{Off: manifest.RegionSize + 30*manifest.BlockSize, Data: bytes.Repeat([]byte("compressible "), 5000)},
	}}
	snap := f.Snapshot("vm", f.Disk(0, im, edit))
	return f, snap
}

type packInfo struct {
	name    string
	size    int64
	entries []pack.Entry
}

// packs lists the stored packs with their headers.
func packs(t *testing.T, f *repofixture.Fixture) []packInfo {
	t.Helper()
	var out []packInfo
	err := f.Store.List(ctx, repo.DataPrefix, func(i store.Info) error {
		id, err := repo.ParsePackName(i.Name)
		if err != nil {
			return err
		}
		e, err := f.Repo.ReadPackHeader(ctx, id, i.Size)
		if err != nil {
			return err
		}
		out = append(out, packInfo{i.Name, i.Size, e})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, func(a, b packInfo) int { return strings.Compare(a.name, b.name) })
	return out
}

// dataPack returns a pack that holds no metadata blobs, so damage to it
// touches no region map or list.
func dataPack(t *testing.T, f *repofixture.Fixture) packInfo {
	t.Helper()
next:
	for _, p := range packs(t, f) {
		for _, e := range p.entries {
			if e.Type != pack.TypeData {
				continue next
			}
		}
		return p
	}
	t.Fatal("no pack holds only data")
	return packInfo{}
}

func names(t *testing.T, f *repofixture.Fixture, prefix string) []string {
	t.Helper()
	var out []string
	if err := f.Store.List(ctx, prefix, func(i store.Info) error { out = append(out, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func flip(t *testing.T, f *repofixture.Fixture, name string, off int64) {
	t.Helper()
	p := filepath.Join(f.Dir, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x04
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// run checks a freshly opened repository.
func run(t *testing.T, f *repofixture.Fixture, readData bool) *Report {
	t.Helper()
	rep, err := Run(ctx, f.Open(), Options{ReadData: readData, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(rep.Problems, func(a, b Problem) int { return strings.Compare(a.Object, b.Object) }) {
		t.Fatal("problems are not sorted by object")
	}
	return rep
}

// expect asserts that the report has exactly the given errors and warnings
// (object and a substring of the message).
func expect(t *testing.T, rep *Report, errs, warns [][2]string) {
	t.Helper()
	var gotErr, gotWarn []Problem
	for _, p := range rep.Problems {
		if p.Warning {
			gotWarn = append(gotWarn, p)
		} else {
			gotErr = append(gotErr, p)
		}
	}
	match := func(kind string, got []Problem, want [][2]string) {
		t.Helper()
		used := make([]bool, len(got))
	next:
		for _, w := range want {
			for i, p := range got {
				if !used[i] && p.Object == w[0] && strings.Contains(p.Message, w[1]) {
					used[i] = true
					continue next
				}
			}
			t.Errorf("no %s on %s containing %q; report: %+v", kind, w[0], w[1], rep.Problems)
		}
		for i, p := range got {
			if !used[i] {
				t.Errorf("unexpected %s: %+v", kind, p)
			}
		}
	}
	match("error", gotErr, errs)
	match("warning", gotWarn, warns)
	if rep.Errors() != len(gotErr) {
		t.Errorf("Errors() = %d, %d errors listed", rep.Errors(), len(gotErr))
	}
}

func TestCheckClean(t *testing.T) {
	f, _ := setup(t, nil)
	ps := packs(t, f)
	if len(ps) < 3 {
		t.Fatalf("the fixture made %d packs, want several", len(ps))
	}
	var blobs int
	var bytes int64
	for _, p := range ps {
		blobs += len(p.entries)
		bytes += p.size
	}
	rep := run(t, f, false)
	expect(t, rep, nil, nil)
	if rep.Keys != 1 || rep.IndexFiles != 1 || rep.Packs != len(ps) || rep.Snapshots != 1 || rep.ReadBytes != 0 {
		t.Fatalf("report %+v", rep)
	}
	rep = run(t, f, true)
	expect(t, rep, nil, nil)
	if rep.Blobs != blobs || rep.ReadBytes != bytes {
		t.Fatalf("read-data report: %d blobs, %d bytes; want %d, %d", rep.Blobs, rep.ReadBytes, blobs, bytes)
	}
}

func TestCheckDamagedBlob(t *testing.T) {
	f, _ := setup(t, nil)
	p := dataPack(t, f)
	e := p.entries[len(p.entries)/2]
	flip(t, f, p.name, int64(e.Offset+e.Length/2))
	// Headers are intact: only --read-data finds the damage.
	expect(t, run(t, f, false), nil, nil)
	expect(t, run(t, f, true), [][2]string{
		{p.name, "content does not match its name"},
		{p.name, e.ID.String()},
	}, nil)
}

// ReadPack narrows --read-data to a sample: a damaged blob in a pack left
// out is not found, in a pack taken it is.
func TestCheckReadPackSubset(t *testing.T) {
	f, _ := setup(t, nil)
	p := dataPack(t, f)
	e := p.entries[len(p.entries)/2]
	flip(t, f, p.name, int64(e.Offset+e.Length/2))
	for _, take := range []bool{false, true} {
		var asked []string
		rep, err := Run(ctx, f.Open(), Options{ReadData: true, Workers: 1, ReadPack: func(name string) bool {
			asked = append(asked, name)
			return (name == p.name) == take
		}})
		if err != nil {
			t.Fatal(err)
		}
		if len(asked) != len(packs(t, f)) {
			t.Fatalf("ReadPack asked about %d packs, want all %d", len(asked), len(packs(t, f)))
		}
		if take {
			expect(t, rep, [][2]string{{p.name, "content does not match its name"}, {p.name, e.ID.String()}}, nil)
		} else {
			expect(t, rep, nil, nil)
			if rep.ReadBytes == 0 {
				t.Fatal("the other packs were not read")
			}
		}
	}
}

func TestCheckDamagedHeader(t *testing.T) {
	f, _ := setup(t, nil)
	p := dataPack(t, f)
	flip(t, f, p.name, -pack.TrailerSize-10)
	expect(t, run(t, f, false), [][2]string{{p.name, "authentication failed"}}, nil)
	expect(t, run(t, f, true), [][2]string{
		{p.name, "content does not match its name"},
		{p.name, "authentication failed"},
	}, nil)
}

func TestCheckTruncatedPack(t *testing.T) {
	f, _ := setup(t, nil)
	p := dataPack(t, f)
	path := filepath.Join(f.Dir, filepath.FromSlash(p.name))
	if err := os.Truncate(path, p.size-1); err != nil {
		t.Fatal(err)
	}
	expect(t, run(t, f, false), [][2]string{{p.name, "malformed"}}, nil)
	if err := os.Truncate(path, 3); err != nil {
		t.Fatal(err)
	}
	expect(t, run(t, f, true), [][2]string{{p.name, "content does not match"}, {p.name, "malformed"}}, nil)
}

func TestCheckMissingPack(t *testing.T) {
	f, _ := setup(t, nil)
	p := dataPack(t, f)
	if err := f.Store.Delete(ctx, p.name); err != nil {
		t.Fatal(err)
	}
	rep := run(t, f, false)
	// The snapshot's chunks are still indexed: the missing pack is the
	// finding.
	expect(t, rep, [][2]string{{p.name, "missing from the store"}}, nil)

	// A pack known to be elsewhere (on a seed in transit) is a warning
	// naming why; any other missing pack stays an error.
	rep, err := Run(ctx, f.Open(), Options{Workers: 3, Elsewhere: func(id pack.ID) string {
		if repo.PackName(id) == p.name {
			return "it travels on seed 5e5e5e5e5e5e"
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, rep, nil, [][2]string{{p.name, "travels on seed 5e5e5e5e5e5e"}})
	if rep.Errors() != 0 {
		t.Fatalf("a pack on a seed in transit counted as an error: %+v", rep.Problems)
	}
}

func TestCheckOrphanPacks(t *testing.T) {
	f, _ := setup(t, nil)
	for _, n := range names(t, f, repo.IndexPrefix) {
		if err := f.Store.Delete(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	var warns [][2]string
	for _, p := range packs(t, f) {
		warns = append(warns, [2]string{p.name, "in no intact index"})
	}
	// Their blobs still count for the snapshot, in both modes.
	expect(t, run(t, f, false), nil, warns)
	expect(t, run(t, f, true), nil, warns)
}

func TestCheckDamagedIndexFile(t *testing.T) {
	f, _ := setup(t, nil)
	idx := names(t, f, repo.IndexPrefix)
	if len(idx) != 1 {
		t.Fatalf("%d index files", len(idx))
	}
	flip(t, f, idx[0], 50)
	var warns [][2]string
	for _, p := range packs(t, f) {
		warns = append(warns, [2]string{p.name, "in no intact index"})
	}
	rep := run(t, f, false)
	expect(t, rep, [][2]string{{idx[0], "does not match its name"}}, warns)
	if rep.IndexFiles != 0 {
		t.Fatalf("IndexFiles = %d", rep.IndexFiles)
	}
}

func TestCheckIndexDisagreesWithHeader(t *testing.T) {
	f, snap := setup(t, nil)
	ps := packs(t, f)
	idx := names(t, f, repo.IndexPrefix)
	file := &index.File{}
	for i, p := range ps {
		entries := slices.Clone(p.entries)
		if i == 0 {
			entries[0].RawLength++
		}
		file.Packs = append(file.Packs, index.PackBlobs{Pack: mustID(t, p.name), Blobs: entries})
	}
	if _, err := f.Repo.SaveIndexFile(ctx, file); err != nil {
		t.Fatal(err)
	}
	// Two index files disagree about the first pack; the header is then
	// compared with whichever listing the checker kept.
	// With the wrong listing, the chunk's extent disagrees with it too.
	rep := run(t, f, false)
	var differ, header, extent int
	for _, p := range rep.Problems {
		switch {
		case strings.Contains(p.Message, "differently from another index file"):
			differ++
		case p.Object == ps[0].name && strings.Contains(p.Message, "does not match the index"):
			header++
		case strings.Contains(p.Message, "bytes but the index says chunk"):
			extent++
		}
	}
	if differ != 1 || header != extent || rep.Errors() != differ+header+extent {
		t.Fatalf("report %+v", rep.Problems)
	}
	// With only the wrong index file, the header disagrees for certain.
	if err := f.Store.Delete(ctx, idx[0]); err != nil {
		t.Fatal(err)
	}
	wrong := [][2]string{{ps[0].name, "pack header does not match the index"}, {repo.SnapshotsPrefix + snap.ID, "bytes but the index says chunk"}}
	expect(t, run(t, f, false), wrong, nil)
	expect(t, run(t, f, true), wrong, nil)
}

func mustID(t *testing.T, name string) pack.ID {
	t.Helper()
	id, err := repo.ParsePackName(name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestCheckDamagedSnapshot(t *testing.T) {
	f, snap := setup(t, nil)
	obj := repo.SnapshotsPrefix + snap.ID
	flip(t, f, obj, 40)
	rep := run(t, f, false)
	expect(t, rep, [][2]string{{obj, "does not match its name"}}, nil)
	if rep.Snapshots != 0 {
		t.Fatalf("Snapshots = %d", rep.Snapshots)
	}
}

func TestCheckDamagedKeySlot(t *testing.T) {
	f, _ := setup(t, nil)
	if _, err := f.Repo.AddPassphraseSlot(ctx, []byte(pass)); err != nil {
		t.Fatal(err)
	}
	keys := names(t, f, repo.KeysPrefix)
	flip(t, f, keys[0], 5)
	rep := run(t, f, false)
	expect(t, rep, [][2]string{{keys[0], "does not match its name"}}, nil)
	if rep.Keys != 2 {
		t.Fatalf("Keys = %d", rep.Keys)
	}
}

func TestCheckChunkMissing(t *testing.T) {
	f, snap := setup(t, func(ri int, m *manifest.RegionMap) {
		if ri == 1 {
			m.Extents = append(m.Extents, manifest.Extent{Offset: 35 * manifest.BlockSize, Length: 10, ID: crypto.ID{1}})
		}
	})
	expect(t, run(t, f, false), [][2]string{{repo.SnapshotsPrefix + snap.ID, "disk 0 region 1: 1 chunks are not in the index"}}, nil)
}

func TestCheckDamagedRegionMap(t *testing.T) {
	f, snap := setup(t, nil)
	r := f.Reopen()
	regions, err := r.DiskRegions(ctx, &snap.Disks[0])
	if err != nil {
		t.Fatal(err)
	}
	loc, ok := r.Index.Lookup(regions[1])
	if !ok {
		t.Fatal("region map not indexed")
	}
	name := repo.PackName(loc.Pack)
	flip(t, f, name, int64(loc.Offset+loc.Length/2))
	expect(t, run(t, f, false), [][2]string{{repo.SnapshotsPrefix + snap.ID, "disk 0 region 1 map"}}, nil)
	expect(t, run(t, f, true), [][2]string{
		{repo.SnapshotsPrefix + snap.ID, "disk 0 region 1 map"},
		{name, "content does not match its name"},
		{name, regions[1].String()},
	}, nil)
}

func TestCheckStrayObject(t *testing.T) {
	f, _ := setup(t, nil)
	if err := f.Store.Put(ctx, repo.DataPrefix+"stray", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	expect(t, run(t, f, false), nil, [][2]string{{repo.DataPrefix + "stray", "not a pack name"}})
}

// TestCheckExtentLength: an extent's length must equal its chunk's length
// (FORMAT.md, "Disk maps"); check finds a map that says otherwise from the
// index alone, without reading data.
func TestCheckExtentLength(t *testing.T) {
	var short manifest.Extent
	f, snap := setup(t, func(ri int, m *manifest.RegionMap) {
		if ri == 1 {
			m.Extents[0].Length--
			short = m.Extents[0]
		}
	})
	want := fmt.Sprintf("disk 0 region 1: the extent at offset %d is %d bytes but the index says chunk %s is %d", short.Offset, short.Length, short.ID, short.Length+1)
	expect(t, run(t, f, false), [][2]string{{repo.SnapshotsPrefix + snap.ID, want}}, nil)
}

// The PackDone hook sees every pack once, with its size, so a caller can
// show progress of check --read-data.
func TestCheckPackDoneProgress(t *testing.T) {
	f, _ := setup(t, nil)
	var want int64
	for _, p := range packs(t, f) {
		want += p.size
	}
	var mu sync.Mutex
	var got int64
	calls := 0
	found, foundN, foundSize := 0, 0, int64(0)
	rep, err := Run(ctx, f.Open(), Options{ReadData: true, Workers: 3, PackDone: func(size int64) {
		mu.Lock()
		got += size
		calls++
		mu.Unlock()
	}, PacksFound: func(n int, size int64) {
		mu.Lock()
		found, foundN, foundSize = found+1, n, size
		if calls != 0 {
			t.Error("PacksFound came after a pack was checked")
		}
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got != want || calls != rep.Packs {
		t.Fatalf("progress saw %d packs, %d bytes; want %d, %d", calls, got, rep.Packs, want)
	}
	if found != 1 || foundN != rep.Packs || foundSize != want {
		t.Fatalf("PacksFound called %d times with %d packs, %d bytes; want once with %d, %d", found, foundN, foundSize, rep.Packs, want)
	}
}
