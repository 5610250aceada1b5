package uploader

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/zstdenc"
	"github.com/cofferhq/coffer/uploader/source"
)

// DiskJob is one disk to back up into a session.
type DiskJob struct {
	Source source.Source
	Index  int    // the disk's index in its snapshot
	Name   string // the disk's name in its snapshot; default "disk<Index>"
	// Counters, when set, receive the disk's progress as it goes.
	Counters *DiskCounters
	// Changes, when set, are the blocks that may have changed since an
	// earlier snapshot of the disk: only they are read (see Changes). The
	// caller checks them first (Changes.Check).
	Changes *Changes
	// Chunking is how runs of data are cut into chunks: the repository's
	// content-defined chunker by default. A changed-block backup must cut
	// as its base did.
	Chunking manifest.Chunking
}

// DiskCounters are one disk's progress, updated as its regions finish.
// All byte counts are of the disk's logical bytes unless named otherwise.
type DiskCounters struct {
	Done      atomic.Int64 // bytes of finished regions
	Read      atomic.Int64 // bytes read from the source (holes are not read)
	Data      atomic.Int64 // bytes in chunks
	Chunks    atomic.Int64
	NewChunks atomic.Int64
	NewBytes  atomic.Int64 // plaintext bytes of new chunks
	Stored    atomic.Int64 // sealed bytes of the new chunks and maps
	// Fetched is the plaintext of earlier chunks read back from the
	// repository to re-cut chunks around changed blocks.
	Fetched atomic.Int64
}

// BackupDisk backs a disk up into the session and returns its record for a
// snapshot. Nothing is visible until a snapshot naming the disk is
// committed (Commit). Disks may be backed up at the same time; each uses
// the session's Workers region workers.
func (s *Session) BackupDisk(ctx context.Context, job DiskJob) (manifest.Disk, error) {
	ctx, done, err := s.diskContext(ctx)
	if err != nil {
		return manifest.Disk{}, err
	}
	defer done()
	if !job.Chunking.Valid() {
		return manifest.Disk{}, fmt.Errorf("unknown chunking %q", job.Chunking)
	}
	d := &diskRun{s: s, src: job.Source, size: job.Source.Size(), c: job.Counters, chunking: job.Chunking}
	if d.c == nil {
		d.c = &DiskCounters{}
	}
	var regionIDs []crypto.ID
	var regionHashes []manifest.Hash
	if job.Changes != nil {
		if err := job.Changes.Check(d.size, job.Chunking); err != nil {
			return manifest.Disk{}, err
		}
		regionIDs, regionHashes, err = d.changedRegions(ctx, job.Changes)
	} else {
		regionIDs, regionHashes, err = d.regions(ctx)
	}
	if err == nil {
		// A disk that shrank or grew while it was read is not saved.
		err = d.src.Recheck()
	}
	var lists []string
	if err == nil {
		lists, err = d.storeLists(ctx, regionIDs)
	}
	if err != nil {
		return manifest.Disk{}, s.cause(err)
	}
	name := job.Name
	if name == "" {
		name = fmt.Sprintf("disk%d", job.Index)
	}
	c := d.c
	return manifest.Disk{
		Index: job.Index, Name: name, Size: d.size,
		BlockSize: manifest.BlockSize, RegionSize: manifest.RegionSize,
		Digest:   manifest.DiskDigest(d.size, regionHashes).String(),
		Lists:    lists,
		Chunking: job.Chunking,
		Stats: manifest.DiskStats{
			DataBytes: c.Data.Load(), ReadBytes: c.Read.Load(), NewBytes: c.NewBytes.Load(),
			StoredBytes: c.Stored.Load(), Chunks: c.Chunks.Load(), NewChunks: c.NewChunks.Load(),
		},
	}, nil
}

// diskRun is one disk being backed up.
type diskRun struct {
	s        *Session
	src      source.Source
	size     int64
	c        *DiskCounters
	chunking manifest.Chunking
}

// regions backs up every region of the disk with the session's workers and
// returns the region maps' IDs and the region hashes, in disk order.
func (d *diskRun) regions(ctx context.Context) ([]crypto.ID, []manifest.Hash, error) {
	nreg := manifest.Regions(d.size)
	ids := make([]crypto.ID, nreg)
	hashes := make([]manifest.Hash, nreg)
	workers := make([]*worker, min(d.s.opt.Workers, max(nreg, 1)))
	for i := range workers {
		workers[i] = d.newWorker()
	}
	err := eachIndex(ctx, workers, nreg, func(ctx context.Context, wk *worker, ri int) (err error) {
		ids[ri], hashes[ri], err = wk.region(ctx, ri)
		return err
	})
	return ids, hashes, err
}

// eachIndex calls fn for 0 <= i < n, each worker taking the next index in
// its own goroutine, and stops at the first error.
func eachIndex(ctx context.Context, workers []*worker, n int, fn func(ctx context.Context, wk *worker, i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for _, wk := range workers {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				if err := fn(gctx, wk, i); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

// storeLists stores the list chunks naming the region maps.
func (d *diskRun) storeLists(ctx context.Context, regions []crypto.ID) ([]string, error) {
	w := d.newWorker()
	lists := []string{}
	for i := 0; i < len(regions); i += manifest.ListFanout {
		id, err := w.storeMeta(ctx, manifest.EncodeList(regions[i:min(i+manifest.ListFanout, len(regions))]))
		if err != nil {
			return nil, err
		}
		lists = append(lists, hex.EncodeToString(id[:]))
	}
	return lists, nil
}

// worker holds one goroutine's buffers; none of it is shared.
type worker struct {
	d       *diskRun
	scan    *regionScanner
	cut     cutter
	hasher  *crypto.IDHasher
	enc     *zstdenc.Encoder
	chunk   []byte
	comp    []byte
	sealed  []byte
	extents []manifest.Extent
	// Reading back earlier chunks (changed-block backups): the reader and
	// the buffers of chunks no longer needed.
	blobs *repo.BlobReader
	spare [][]byte
	// Patching regions: the changed blocks of the region being patched,
	// read into place, and an unchanged block rebuilt from earlier chunks.
	slab   []byte
	oldBuf [manifest.BlockSize]byte
}

func (d *diskRun) newWorker() *worker {
	r := d.s.r
	cp := r.Config().Chunker
	return &worker{
		d:      d,
		scan:   newRegionScanner(),
		cut:    newCutter(r, d.chunking),
		hasher: r.Keys().NewIDHasher(),
		enc:    zstdenc.New(),
		chunk:  make([]byte, max(int(cp.Max), manifest.BlockSize)),
	}
}

// region backs up region ri and returns its map's ID and its hash.
func (w *worker) region(ctx context.Context, ri int) (crypto.ID, manifest.Hash, error) {
	d := w.d
	off := int64(ri) * manifest.RegionSize
	length := min(manifest.RegionSize, d.size-off)
	if err := w.scan.reset(d.src, off, length); err != nil {
		return crypto.ID{}, manifest.Hash{}, err
	}
	w.extents = w.extents[:0]
	for {
		ok, err := w.scan.nextRun()
		if err != nil {
			return crypto.ID{}, manifest.Hash{}, err
		}
		if !ok {
			break
		}
		runStart := w.scan.pos
		w.cut.Reset(w.scan)
		for {
			c, err := w.cut.Next(w.chunk)
			if err == io.EOF {
				break
			}
			if err != nil {
				return crypto.ID{}, manifest.Hash{}, err
			}
			e := manifest.Extent{Offset: uint32(runStart) + uint32(c.Start), Length: uint32(c.Length), ID: w.hasher.Sum(c.Data)}
			if err := w.addChunk(ctx, e, c.Data); err != nil {
				return crypto.ID{}, manifest.Hash{}, err
			}
		}
		if err := ctx.Err(); err != nil {
			return crypto.ID{}, manifest.Hash{}, err
		}
	}
	d.c.Read.Add(w.scan.readBytes)
	id, err := w.storeMap(ctx, manifest.RegionMap{Extents: w.extents, Blocks: w.scan.blocks})
	if err != nil {
		return crypto.ID{}, manifest.Hash{}, err
	}
	d.c.Done.Add(length)
	return id, manifest.RegionHash(w.scan.blocks), nil
}

// compressSample is the size of the samples compressible compresses.
const compressSample = 4 << 10

// compressible reports whether a chunk is worth compressing: a large
// chunk is, unless samples of it (its start, middle and end) do not shrink.
// Random and encrypted data do not, and compressing them whole costs as
// much as all the rest of a backup's work on them.
func (w *worker) compressible(data []byte) (bool, error) {
	if len(data) < 8*compressSample {
		return true, nil
	}
	for _, off := range []int{0, len(data)/2 - compressSample/2, len(data) - compressSample} {
		comp, err := w.enc.Encode(w.comp, data[off:off+compressSample])
		if err != nil {
			return false, err
		}
		w.comp = comp
		if len(comp) < compressSample-compressSample/32 {
			return true, nil
		}
	}
	return false, nil
}

// store compresses a chunk (when that saves at least 1/32) and hands it to
// the packer, which seals it.
func (w *worker) store(ctx context.Context, typ uint8, id crypto.ID, data []byte) error {
	payload, flags := data, uint8(0)
	ok, err := w.compressible(data)
	if err != nil {
		return fmt.Errorf("compressing chunk %s: %w", id, err)
	}
	if ok {
		comp, err := w.enc.Encode(w.comp, data)
		if err != nil {
			return fmt.Errorf("compressing chunk %s: %w", id, err)
		}
		w.comp = comp
		if len(w.comp) < len(data)-len(data)/32 {
			payload, flags = w.comp, pack.FlagZstd
		}
	}
	w.d.c.Stored.Add(int64(len(payload) + crypto.Overhead))
	return w.d.s.pk.add(ctx, typ, flags, id, len(data), payload, &w.sealed)
}
