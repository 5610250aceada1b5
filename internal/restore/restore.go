package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/imgfmt"
	"github.com/cofferhq/coffer/internal/index"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
)

// ErrMismatch is returned when the restored disk does not match the digest
// recorded at backup time.
var ErrMismatch = errors.New("restored disk does not match the digest recorded at backup time")

// Options tune a restore.
type Options struct {
	Workers   int  // concurrent pack fetches; default 2*GOMAXPROCS
	Overwrite bool // allow replacing an existing output file
	// OverwriteDevice allows restoring onto a block device whose first or
	// last MiB holds data.
	OverwriteDevice bool
	NoVerify        bool // skip comparing the output with the recorded hashes (not recommended)
	Sync            bool // fsync the output before returning
	// ReadBack reads every written block back from the output to compare
	// it, rather than hashing the blocks inside one chunk as they are
	// written: slower, and it also catches a file system that loses or
	// misplaces a write (for restore drills).
	ReadBack bool
	// Format is the output's format; "" is raw.
	Format Format
	// Delta updates an existing copy of the disk in place (a file or a
	// device that holds an older restore): it hashes the blocks there and
	// fetches only the chunks that cover a block that differs.
	Delta bool
}

// Progress counts a running restore.
type Progress struct {
	Size    int64 // disk size
	Done    int64 // bytes of the disk restored and verified (regions, holes included)
	Written int64 // plaintext bytes written
	Fetched int64 // bytes fetched from the store
	Reused  int64 // delta: bytes of blocks the output held already
}

// Result summarises a finished restore.
type Result struct {
	Progress
	Chunks int
	Device bool // restored onto a block device: its empty parts were zeroed
	// ImageSize is the size an image format holds: the disk's, rounded up
	// to whole 512-byte sectors (VHD and qcow2 count sectors).
	ImageSize int64
	Format    Format // what was written: raw, vhd or qcow2
	Verified  bool
	Digest    string
	Duration  time.Duration
}

// Restorer restores one disk of one snapshot.
type Restorer struct {
	r       *repo.Repo
	disk    *manifest.Disk
	opt     Options
	written atomic.Int64
	done    atomic.Int64
	fetched atomic.Int64
	reused  atomic.Int64
	scratch chan *scratch
	// writeMu serializes writes to the output. File systems serialize
	// buffered writes to one file anyway (ext4 and XFS hold the inode
	// lock for the copy), and when the kernel arbitrates, a writer that
	// finds the lock taken spins on the other core; waiting here instead
	// leaves that core to the workers that are decrypting and
	// decompressing.
	writeMu sync.Mutex
}

// New prepares a restore of disk d. The repository's index must be loaded.
func New(r *repo.Repo, d *manifest.Disk, opt Options) *Restorer {
	if opt.Workers <= 0 {
		opt.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	if opt.Format == "" {
		opt.Format = FormatRaw
	}
	rs := &Restorer{r: r, disk: d, opt: opt, scratch: make(chan *scratch, opt.Workers)}
	for i := 0; i < opt.Workers; i++ {
		rs.scratch <- &scratch{}
	}
	return rs
}

// Progress returns the current counters.
func (rs *Restorer) Progress() Progress {
	return Progress{Size: rs.disk.Size, Done: rs.done.Load(), Written: rs.written.Load(), Fetched: rs.fetched.Load(), Reused: rs.reused.Load()}
}

// windowRegions is the most regions (of 64 MiB) planned at once, which
// bounds the plan's memory (a few MiB) whatever the disk's size. Windows
// grow from one region to this size (1, 4, 16, 64, 64, ...), so that the
// first fetches start after one region map is loaded, and then few windows
// share a pack: each window reads a pack it needs at least once, and every
// read costs the store about a millisecond of CPU.
const (
	windowRegions = 64
	windowGrowth  = 4
)

// Run restores the disk into the file or block device at path. A file is
// written under a temporary name beside path and renamed to path only once
// it is verified: a restore that fails or is interrupted leaves nothing
// behind, and running it again starts afresh.
func (rs *Restorer) Run(ctx context.Context, path string) (*Result, error) {
	start := clock.Start()
	var out *output
	var err error
	switch {
	case rs.opt.Delta && rs.opt.Format != FormatRaw:
		return nil, fmt.Errorf("a delta restore updates a raw image or a device; it cannot write %s", rs.opt.Format)
	case rs.opt.Delta:
		out, err = openDelta(path, rs.disk.Size)
	case rs.opt.Format == FormatVHD || rs.opt.Format == FormatQCOW2:
		out, err = rs.openImage(ctx, path)
	case rs.opt.Format == FormatRaw:
		out, err = openOutput(path, rs.disk.Size, rs.opt)
	default:
		return nil, fmt.Errorf("unknown restore format %q", rs.opt.Format)
	}
	if err != nil {
		return nil, err
	}
	if out.t.InPlace() {
		// A device held other data before: every block is read back
		// (holes included, see classify), so what is checked is what the
		// device returns, not what was meant to be written.
		rs.opt.ReadBack = true
	}
	res, err := rs.restoreInto(ctx, out)
	if err == nil {
		err = out.commit(rs.opt.Sync)
	}
	if err != nil {
		out.abort()
		return nil, err
	}
	res.Duration = start.Elapsed()
	res.Format = rs.opt.Format
	if rs.opt.Format == FormatVHD || rs.opt.Format == FormatQCOW2 {
		res.ImageSize = imgfmt.VirtualSize(rs.disk.Size)
	}
	return res, nil
}

// restoreInto writes and verifies the disk in out.
func (rs *Restorer) restoreInto(ctx context.Context, out *output) (*Result, error) {
	regions, err := rs.r.DiskRegions(ctx, rs.disk)
	if err != nil {
		return nil, err
	}
	regionHashes := make([]manifest.Hash, len(regions))
	chunks, err := rs.pipeline(ctx, out, regions, regionHashes)
	if err != nil {
		return nil, err
	}
	res := &Result{Progress: rs.Progress(), Chunks: chunks, Digest: rs.disk.Digest, Device: out.t.InPlace()}
	if !rs.opt.NoVerify {
		if got := manifest.DiskDigest(rs.disk.Size, regionHashes).String(); got != rs.disk.Digest {
			return nil, fmt.Errorf("%w: digest %s, recorded %s", ErrMismatch, got, rs.disk.Digest)
		}
		res.Verified = true
	}
	return res, nil
}

// target is one place a chunk goes: length bytes at disk offset off, in a
// region whose recorded block hashes are blocks.
type target struct {
	off    int64
	length uint32
	blocks []manifest.BlockSum
}

type blobJob struct {
	loc     index.Location
	id      crypto.ID
	targets []target
}

// batch is one ranged read of a pack: the chunks it holds, the regions
// (indexes into the window) they are written to, and the lowest disk
// offset they are written to.
type batch struct {
	jobs    []*blobJob
	regions []int
	low     int64
}

// window is a run of regions planned together: every chunk they need is
// fetched once, with its places in all of them.
type window struct {
	first   int // index of the first region
	maps    []*manifest.RegionMap
	batches []batch
	chunks  int
	// pending counts, per region, the batches that still write into it; a
	// region is verified when its count reaches zero.
	pending []atomic.Int32
	// readBack lists, per region, the blocks that are verified by reading
	// them back from the output (see classify).
	readBack [][]int32
}

// pipeline restores the regions. A planner loads the region maps one window
// ahead of the fetches, so the workers never wait for a plan; the fetches of
// all windows share one pool of workers. Blocks that lie inside one chunk
// are checked as the chunk is written; the rest of a region is checked as
// soon as the last batch that writes into it is done, while its pages are
// still cached and while later regions are fetched.
func (rs *Restorer) pipeline(ctx context.Context, out *output, regions []crypto.ID, regionHashes []manifest.Hash) (int, error) {
	t := out.t
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	fail := func(err error) error {
		if err != nil {
			cancel(err)
		}
		return err
	}
	var fetches, verifies errgroup.Group
	fetches.SetLimit(rs.opt.Workers)
	verifies.SetLimit(runtime.GOMAXPROCS(0))
	verify := func(w *window, i int) {
		if rs.opt.NoVerify {
			rs.regionDone(w.first + i)
			return
		}
		verifies.Go(func() error {
			if ctx.Err() != nil {
				return nil
			}
			err := verifyRegion(t, rs.disk.Size, w.first+i, w.maps[i], w.readBack[i], &regionHashes[w.first+i])
			if err == nil {
				rs.regionDone(w.first + i)
			}
			return fail(err)
		})
	}

	// The planner hands over one window and plans the next meanwhile.
	planned := make(chan *window, 1)
	go func() {
		defer close(planned)
		size := 1
		for first := 0; first < len(regions); first += size {
			if first > 0 {
				size = min(windowGrowth*size, windowRegions)
			}
			end := min(first+size, len(regions))
			w, err := rs.plan(ctx, regions[first:end], first, out)
			if err == nil {
				err = rs.prepare(t, w)
			}
			if err != nil {
				fail(err)
				return
			}
			select {
			case planned <- w:
			case <-ctx.Done():
				return
			}
		}
	}()

	chunks := 0
	for w := range planned {
		chunks += w.chunks
		for i := range w.pending {
			if w.pending[i].Load() == 0 {
				verify(w, i) // nothing to fetch: a region of holes
			}
		}
		for _, b := range w.batches {
			fetches.Go(func() error {
				if err := fail(rs.fetch(ctx, t, b.jobs)); err != nil {
					return err
				}
				for _, i := range b.regions {
					if w.pending[i].Add(-1) == 0 {
						verify(w, i)
					}
				}
				return nil
			})
		}
		if ctx.Err() != nil {
			break
		}
	}
	for range planned { // let the planner end after a failure
	}
	ferr := fetches.Wait()
	verr := verifies.Wait()
	// A failure's cause, or the caller's cancellation: either way some
	// regions were not restored, so the digest must not be computed.
	if cause := context.Cause(ctx); cause != nil {
		return 0, cause
	}
	if ferr != nil {
		return 0, ferr
	}
	return chunks, verr
}

// plan loads the maps of the regions whose map IDs are given (the first
// being region first), and groups the chunks they need into pack range
// reads: every chunk once, with every place it goes.
func (rs *Restorer) plan(ctx context.Context, regions []crypto.ID, first int, out *output) (*window, error) {
	device := out.t.InPlace()
	w := &window{first: first, maps: make([]*manifest.RegionMap, len(regions)),
		pending: make([]atomic.Int32, len(regions)), readBack: make([][]int32, len(regions))}
	err := rs.loadMaps(ctx, regions, first, func(i int, m *manifest.RegionMap) (err error) {
		ri := first + i
		if !rs.opt.NoVerify {
			if w.readBack[i], err = classify(m, rs.regionLen(ri), int64(ri)*manifest.RegionSize, rs.opt.ReadBack, device); err != nil {
				return err
			}
		}
		w.maps[i] = m
		return nil
	})
	if err != nil {
		return nil, err
	}
	var present [][]bool
	if rs.opt.Delta {
		if present, err = rs.compare(ctx, out, w); err != nil {
			return nil, err
		}
	}
	jobs := map[crypto.ID]*blobJob{}
	for i := range regions {
		base := int64(first+i) * manifest.RegionSize
		for _, e := range w.maps[i].Extents {
			if present != nil && !needed(present[i], int64(e.Offset), int64(e.Length)) {
				continue
			}
			j := jobs[e.ID]
			if j == nil {
				loc, err := rs.r.Locate(ctx, e.ID)
				if err != nil {
					return nil, fmt.Errorf("chunk at disk offset %d: %w", base+int64(e.Offset), err)
				}
				j = &blobJob{loc: loc, id: e.ID}
				jobs[e.ID] = j
			}
			j.targets = append(j.targets, target{off: base + int64(e.Offset), length: e.Length, blocks: w.maps[i].Blocks})
		}
	}
	w.chunks = len(jobs)
	list := make([]*blobJob, 0, len(jobs))
	for _, j := range jobs {
		list = append(list, j)
	}
	for _, run := range repo.Ranges(list, jobLoc, repo.MaxGap, repo.MaxRange) {
		w.batches = append(w.batches, w.newBatch(run))
	}
	// Fetch in disk order, so regions complete (and are verified) early
	// and one after another rather than all at the end of the window.
	slices.SortFunc(w.batches, func(a, b batch) int { return cmp.Compare(a.low, b.low) })
	for _, b := range w.batches {
		for _, i := range b.regions {
			w.pending[i].Add(1)
		}
	}
	return w, nil
}

// compare hashes the output's blocks of window w (a delta restore), clears
// the blocks the snapshot has empty and the output does not, and leaves to
// read back only the blocks it changes. It returns which blocks the output
// holds already.
func (rs *Restorer) compare(ctx context.Context, out *output, w *window) ([][]bool, error) {
	present, err := presentBlocks(ctx, out.t, rs.disk.Size, w.first, w.maps)
	if err != nil {
		return nil, err
	}
	for i, m := range w.maps {
		ri := w.first + i
		stale := staleHoles(m, present[i])
		if err := clearBlocks(out.f, out.device, rs.disk.Size, ri, stale); err != nil {
			return nil, err
		}
		var keep []int32
		for _, b := range w.readBack[i] {
			if !present[i][b] {
				keep = append(keep, b)
			}
		}
		w.readBack[i] = append(keep, stale...)
		slices.Sort(w.readBack[i])
		for b, ok := range present[i] {
			if ok {
				rs.reused.Add(min(manifest.BlockSize, rs.disk.Size-int64(ri)*manifest.RegionSize-int64(b)*manifest.BlockSize))
			}
		}
	}
	return present, nil
}

// loadMaps loads and decodes the region maps of regions (the first being
// region first) and hands each to fn, concurrently. The maps of a window
// were mostly written next to each other, so they come in a few ranged
// reads rather than one request each.
func (rs *Restorer) loadMaps(ctx context.Context, regions []crypto.ID, first int, fn func(i int, m *manifest.RegionMap) error) error {
	err := rs.r.LoadBlobs(ctx, regions, rs.opt.Workers, func(i int, b []byte) error {
		m, err := manifest.DecodeRegionMap(b, rs.regionLen(first+i))
		if err != nil {
			return fmt.Errorf("region %d map %s: %w", first+i, regions[i], err)
		}
		return fn(i, m)
	})
	if err != nil {
		return fmt.Errorf("disk %d region maps: %w", rs.disk.Index, err)
	}
	return nil
}

// regionLen is the length of region ri of the disk.
func (rs *Restorer) regionLen(ri int) int64 {
	return min(manifest.RegionSize, rs.disk.Size-int64(ri)*manifest.RegionSize)
}

// regionDone counts region ri as restored.
func (rs *Restorer) regionDone(ri int) {
	rs.done.Add(rs.regionLen(ri))
}

// prepare readies the target for window w's writes.
func (rs *Restorer) prepare(t Target, w *window) error {
	from := int64(w.first) * manifest.RegionSize
	to := min(from+int64(len(w.maps))*manifest.RegionSize, rs.disk.Size)
	return t.Prepare(w.dataRanges(), from, to)
}

// dataRanges returns the ranges of the disk the window's chunks cover, in
// order, adjacent ones merged.
func (w *window) dataRanges() []Range {
	var ranges []Range
	for i, m := range w.maps {
		base := int64(w.first+i) * manifest.RegionSize
		for _, e := range m.Extents {
			lo := base + int64(e.Offset)
			if n := len(ranges); n > 0 && ranges[n-1].Off+ranges[n-1].Len == lo {
				ranges[n-1].Len += int64(e.Length)
				continue
			}
			ranges = append(ranges, Range{Off: lo, Len: int64(e.Length)})
		}
	}
	return ranges
}

// newBatch makes the batch of jobs, a range of one pack.
func (w *window) newBatch(jobs []*blobJob) batch {
	b := batch{jobs: jobs, low: math.MaxInt64}
	for _, j := range jobs {
		for _, t := range j.targets {
			b.low = min(b.low, t.off)
			if i := int(t.off/manifest.RegionSize) - w.first; !slices.Contains(b.regions, i) {
				b.regions = append(b.regions, i)
			}
		}
	}
	return b
}

// scratch is one fetch worker's memory: one sealed blob and the buffers
// that open it.
type scratch struct {
	buf  []byte
	blob repo.BlobBuffers
}

// jobLoc is where a job's chunk is stored.
func jobLoc(j *blobJob) index.Location { return j.loc }

// fetch reads one range of a pack (a batch) and writes each blob in it as
// it arrives (repo.StreamBlobs): only one sealed blob is held at a time, so
// a range may span most of a pack, and the next blob arrives in the socket
// buffer while this one is decrypted. A worker's buffers come from a fixed
// pool (Options.Workers), so a restore's memory depends neither on the
// disk's size nor on how long its ranged reads are.
func (rs *Restorer) fetch(ctx context.Context, t Target, batch []*blobJob) error {
	var sc *scratch
	select {
	case sc = <-rs.scratch:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { rs.scratch <- sc }()
	// With verification on, every block written is compared with its
	// recorded hash, which covers the chunks' plaintext: the per-chunk
	// keyed hash would check the same bytes a second time.
	var h *crypto.IDHasher
	if rs.opt.NoVerify {
		h = rs.r.Keys().NewIDHasher()
	}
	name := repo.PackName(batch[0].loc.Pack)
	n, err := repo.StreamBlobs(ctx, rs.r.Store(), batch, jobLoc, &sc.buf, func(j *blobJob, sealed []byte) error {
		return rs.writeBlob(t, h, j, name, sealed, &sc.blob)
	})
	if err != nil {
		return err
	}
	rs.fetched.Add(n)
	return nil
}

// writeBlob opens one sealed chunk and writes its plaintext everywhere the
// disk map puts it.
func (rs *Restorer) writeBlob(out Target, h *crypto.IDHasher, j *blobJob, pack string, sealed []byte, bb *repo.BlobBuffers) error {
	where := fmt.Sprintf("chunk %s in pack %s", j.id, pack)
	plain, err := rs.r.OpenBlobInPlace(h, j.loc.Type, j.loc.Flags, j.id, sealed, bb, where)
	if err != nil {
		return fmt.Errorf("%w; the pack is damaged: run coffer check --read-data", err)
	}
	for _, t := range j.targets {
		if int(t.length) != len(plain) {
			return fmt.Errorf("%s: chunk is %d bytes but the disk map says %d", where, len(plain), t.length)
		}
		if !rs.opt.NoVerify && !rs.opt.ReadBack {
			if err := checkWhole(t, plain, rs.disk.Size); err != nil {
				return err
			}
		}
		rs.writeMu.Lock()
		_, err := out.WriteAt(plain, t.off)
		rs.writeMu.Unlock()
		if err != nil {
			return fmt.Errorf("writing the output at %d: %w", t.off, err)
		}
		rs.written.Add(int64(len(plain)))
	}
	return nil
}

// classify sorts the blocks of a region (of regionLen bytes, at disk offset
// base) by how a restore verifies them against the hashes recorded at
// backup:
//   - a block inside one chunk is hashed from the chunk's plaintext as it is
//     written (checkWhole): most blocks, at no extra I/O;
//   - a block no chunk touches is a hole, and its recorded hash must be the
//     zero block's, which is checked here;
//   - any other block (the end of one chunk and the start of the next, or a
//     chunk's edge and a hole) is read back from the output once the region
//     is written (verifyRegion).
//
// It returns the blocks of the last kind, with all set those of the first
// kind too (Options.ReadBack), and with holes set the holes too (a device,
// whose holes were zeroed rather than left unwritten).
func classify(m *manifest.RegionMap, regionLen, base int64, all, holes bool) (readBack []int32, err error) {
	e := 0 // the first extent that ends after the block starts
	for b := range m.Blocks {
		lo := int64(b) * manifest.BlockSize
		hi := min(lo+manifest.BlockSize, regionLen)
		for e < len(m.Extents) && int64(m.Extents[e].Offset)+int64(m.Extents[e].Length) <= lo {
			e++
		}
		switch {
		case e == len(m.Extents) || int64(m.Extents[e].Offset) >= hi:
			if m.Blocks[b] != manifest.ZeroBlockHash(int(hi-lo)) {
				return nil, blockMismatch(base + lo)
			}
			if holes {
				readBack = append(readBack, int32(b))
			}
		case all || int64(m.Extents[e].Offset) > lo || int64(m.Extents[e].Offset)+int64(m.Extents[e].Length) < hi:
			readBack = append(readBack, int32(b))
		}
	}
	return readBack, nil
}

// checkWhole hashes the blocks that lie wholly inside target t from plain,
// the chunk's plaintext, and compares each with its recorded hash. size is
// the disk's size, which bounds its last block.
func checkWhole(t target, plain []byte, size int64) error {
	base := t.off / manifest.RegionSize * manifest.RegionSize
	regionLen := min(manifest.RegionSize, size-base)
	o, end := t.off-base, t.off-base+int64(len(plain))
	for b := (o + manifest.BlockSize - 1) / manifest.BlockSize; b < int64(len(t.blocks)); b++ {
		lo, hi := b*manifest.BlockSize, min((b+1)*manifest.BlockSize, regionLen)
		if hi > end {
			break
		}
		if manifest.BlockHash(plain[lo-o:hi-o]) != t.blocks[b] {
			return blockMismatch(base + lo)
		}
	}
	return nil
}

// blockMismatch is the error for the block at disk offset off.
func blockMismatch(off int64) error {
	return fmt.Errorf("%w: the 64 KiB block at offset %d differs", ErrMismatch, off)
}

// verifyRegion finishes the check of region ri once everything is written
// into it: it reads back the blocks classify left to it and compares them
// with the hashes in m. Every other block was checked before, so the
// region's hash is then the hash of m's blocks, which goes into hash.
func verifyRegion(t Target, size int64, ri int, m *manifest.RegionMap, readBack []int32, hash *manifest.Hash) error {
	base := int64(ri) * manifest.RegionSize
	var buf []byte
	for _, b := range readBack {
		lo := base + int64(b)*manifest.BlockSize
		n := min(manifest.BlockSize, size-lo)
		if buf == nil {
			buf = make([]byte, manifest.BlockSize)
		}
		if _, err := t.ReadAt(buf[:n], lo); err != nil {
			return fmt.Errorf("reading back %s at %d: %w", t.Name(), lo, err)
		}
		if manifest.BlockHash(buf[:n]) != m.Blocks[b] {
			return blockMismatch(lo)
		}
	}
	*hash = manifest.RegionHash(m.Blocks)
	return nil
}
