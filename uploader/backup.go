package uploader

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/restic/chunker"
	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/zstdenc"
	"github.com/cofferhq/coffer/uploader/source"
)

// Options tune a backup.
type Options struct {
	Name      string      // snapshot name; required
	Tags      []string    // optional labels
	Workers   int         // region workers; default GOMAXPROCS
	Uploaders int         // concurrent pack uploads; default 4
	Clock     clock.Clock // the snapshot's time; default the wall clock
	// StateDir holds this machine's run marks for the repository (see
	// runmark.go): with it, a backup lists the repository's packs only
	// after one that did not end cleanly. Empty: list every time.
	StateDir string
}

// Progress is a consistent-enough view of a running backup, for progress
// output. All byte counts are of the disk's logical bytes unless named
// otherwise.
type Progress struct {
	Size        int64 // disk size
	Done        int64 // bytes of finished regions
	Read        int64 // bytes read from the source (holes are not read)
	Chunks      int64
	NewChunks   int64
	NewBytes    int64 // plaintext bytes of new chunks
	StoredBytes int64 // bytes of packs uploaded
	Packs       int64
	// StoreWait is how long the readers waited for uploads to make room.
	StoreWait time.Duration
}

// Result summarises a finished backup.
type Result struct {
	SnapshotID string
	Snapshot   *manifest.Snapshot
	Progress
	// OrphanScan says whether this run listed the repository's packs to
	// index those an earlier run left unindexed; RecoveredPacks is how
	// many it found.
	OrphanScan     bool
	RecoveredPacks int
	// TempRemoved and TempRemovedBytes count the temporary files of
	// writers that died mid-put (a killed backup on a local directory),
	// removed before this run.
	TempRemoved      int
	TempRemovedBytes int64
	// Warnings are problems that did not stop the backup.
	Warnings []string
	Duration time.Duration
}

// Backup is one run of the pipeline over one source.
type Backup struct {
	r    *repo.Repo
	src  source.Source
	opt  Options
	pk   *packer
	done atomic.Int64
	read atomic.Int64
	data atomic.Int64
	nch  atomic.Int64
	nnew atomic.Int64
	bnew atomic.Int64
	size int64
}

// New prepares a backup of src into r. The repository's index must be
// loaded.
func New(r *repo.Repo, src source.Source, opt Options) (*Backup, error) {
	if err := manifest.ValidName(opt.Name); err != nil {
		return nil, fmt.Errorf("snapshot name: %v", err)
	}
	if opt.Workers <= 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.Uploaders <= 0 {
		opt.Uploaders = 4
	}
	opt.Clock = clock.Or(opt.Clock)
	// A data pack buffer per upload in progress and one being filled. A
	// store that defers durability (a local directory) frees the buffer
	// before its fsync, so two buffers in flight keep twice as many
	// uploaders busy.
	buffers := opt.Uploaders + 1
	if store.DefersPuts(r.Store()) {
		buffers = min(buffers, 3)
	}
	return &Backup{r: r, src: src, opt: opt, size: src.Size(), pk: newPacker(r, buffers)}, nil
}

// Progress returns the current counters.
func (b *Backup) Progress() Progress {
	return Progress{
		Size: b.size, Done: b.done.Load(), Read: b.read.Load(),
		Chunks: b.nch.Load(), NewChunks: b.nnew.Load(), NewBytes: b.bnew.Load(),
		StoredBytes: b.pk.storedBytes.Load(), Packs: b.pk.packs.Load(),
		StoreWait: time.Duration(b.pk.waited.Load()),
	}
}

// Run backs the source up and writes the snapshot. Nothing is visible as a
// snapshot unless Run returns without error.
func (b *Backup) Run(ctx context.Context) (res *Result, err error) {
	start := clock.Start()
	var warnings []string
	// Packs a killed or failed run uploaded but did not index are indexed
	// (and an index file written for them), so they are not uploaded
	// again; finding them means listing every pack, which is done only
	// when a run on this machine did not end cleanly, when an index file
	// was skipped that no listing has covered yet, or without a state
	// directory.
	scan, dead := true, []string(nil)
	if b.opt.StateDir != "" {
		mark, d, merr := beginRun(b.opt.StateDir)
		if merr != nil {
			warnings = append(warnings, merr.Error()+"; the repository's packs are listed on every run")
		} else {
			defer func() {
				if err == nil {
					mark.end()
				} else {
					mark.abandon()
				}
			}()
			dead = d
			scan = len(dead) > 0 || len(newSkippedIndexes(b.opt.StateDir, b.r.SkippedIndexFiles())) > 0
		}
	}
	recovered, temp := 0, store.TempReport{}
	if scan {
		var w []string
		if recovered, temp, w, err = b.recoverDeadRuns(ctx, dead); err != nil {
			return nil, err
		}
		warnings = append(warnings, w...)
	}
	nreg := manifest.Regions(b.size)
	regionIDs := make([]crypto.ID, nreg)
	regionHashes := make([]manifest.Hash, nreg)

	// Uploaders outlive the region workers (they drain the last packs), so
	// they share a context the workers' group does not cancel; an upload
	// failure cancels everything.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var up errgroup.Group
	for i := 0; i < b.opt.Uploaders; i++ {
		up.Go(func() error {
			err := b.pk.uploader(ctx)
			if err != nil {
				cancel(err)
			}
			return err
		})
	}
	g, gctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	for w := 0; w < b.opt.Workers; w++ {
		g.Go(func() error {
			wk := b.newWorker()
			for {
				ri := int(next.Add(1) - 1)
				if ri >= nreg {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err
				}
				id, h, err := wk.region(gctx, ri)
				if err != nil {
					return err
				}
				regionIDs[ri], regionHashes[ri] = id, h
			}
		})
	}
	err = g.Wait()
	if err == nil {
		// A disk that shrank or grew while it was read is not saved.
		err = b.src.Recheck()
	}
	var lists []string
	if err == nil {
		lists, err = b.storeLists(ctx, regionIDs)
	}
	if err == nil {
		err = b.pk.flush(ctx)
	}
	close(b.pk.uploads)
	if uerr := up.Wait(); uerr != nil {
		err = uerr // the cause; workers only saw the cancellation
	}
	if err == nil {
		err = b.pk.addToIndexFile(ctx, pack.ID{}, nil, true)
	}
	if err != nil {
		return nil, err
	}

	host, _ := os.Hostname()
	p := b.Progress()
	snap := &manifest.Snapshot{
		Version: manifest.SnapshotVersion,
		Time:    b.opt.Clock.Now().UTC(),
		Host:    host,
		Name:    b.opt.Name,
		Tags:    b.opt.Tags,
		Source:  manifest.Source{Kind: "image", Path: b.src.Path()},
		Disks: []manifest.Disk{{
			Index: 0, Name: "disk0", Size: b.size,
			BlockSize: manifest.BlockSize, RegionSize: manifest.RegionSize,
			Digest: manifest.DiskDigest(b.size, regionHashes).String(),
			Lists:  lists,
			Stats: manifest.DiskStats{
				DataBytes: b.data.Load(), ReadBytes: p.Read, NewBytes: p.NewBytes,
				StoredBytes: p.StoredBytes, Chunks: p.Chunks, NewChunks: p.NewChunks,
			},
		}},
	}
	id, err := b.r.SaveSnapshot(ctx, snap)
	if err != nil {
		return nil, err
	}
	return &Result{SnapshotID: id, Snapshot: snap, Progress: b.Progress(), OrphanScan: scan, RecoveredPacks: recovered,
		TempRemoved: temp.Removed, TempRemovedBytes: temp.Bytes, Warnings: warnings, Duration: start.Elapsed()}, nil
}

// recoverDeadRuns indexes the packs of runs that did not end cleanly (and
// those of skipped index files), removes their half-written files, and
// then forgets the marks of dead runs — unless a temporary file was too
// young to judge: the marks then stay, so the next run looks again instead
// of leaving it for good.
func (b *Backup) recoverDeadRuns(ctx context.Context, dead []string) (int, store.TempReport, []string, error) {
	var warnings []string
	recovered, err := b.r.IndexOrphanPacks(ctx, true)
	if err != nil {
		return 0, store.TempReport{}, nil, err
	}
	// What the run that died left half-written is garbage (its finished
	// packs were just indexed); failing to remove it is no reason not to
	// back up.
	temp, terr := store.RemoveStaleTemp(ctx, b.r.Store())
	if terr != nil {
		warnings = append(warnings, "temporary files of an interrupted backup could not all be removed: "+terr.Error())
	}
	if temp.Young == 0 && terr == nil {
		if merr := removeMarks(dead); merr != nil {
			warnings = append(warnings, "removing the marks of earlier runs: "+merr.Error())
		}
	}
	if b.opt.StateDir != "" {
		if serr := rememberSkippedIndexes(b.opt.StateDir, b.r.SkippedIndexFiles()); serr != nil {
			warnings = append(warnings, "state directory: "+serr.Error())
		}
	}
	return recovered, temp, warnings, nil
}

// storeLists stores the list chunks naming the region maps.
func (b *Backup) storeLists(ctx context.Context, regions []crypto.ID) ([]string, error) {
	w := b.newWorker()
	lists := []string{}
	for i := 0; i < len(regions); i += manifest.ListFanout {
		data := manifest.EncodeList(regions[i:min(i+manifest.ListFanout, len(regions))])
		id := w.hasher.Sum(data)
		if b.pk.claim(id) {
			if err := w.store(ctx, pack.TypeMeta, id, data); err != nil {
				return nil, err
			}
		}
		lists = append(lists, hex.EncodeToString(id[:]))
	}
	return lists, nil
}

// worker holds one goroutine's buffers; none of it is shared.
type worker struct {
	b       *Backup
	scan    *regionScanner
	ch      *chunker.Chunker
	hasher  *crypto.IDHasher
	enc     *zstdenc.Encoder
	chunk   []byte
	comp    []byte
	sealed  []byte
	extents []manifest.Extent
}

func (b *Backup) newWorker() *worker {
	cp := b.r.Config().Chunker
	return &worker{
		b:      b,
		scan:   newRegionScanner(),
		ch:     chunker.NewWithBoundaries(nil, b.r.Polynomial(), cp.Min, cp.Max),
		hasher: b.r.Keys().NewIDHasher(),
		enc:    zstdenc.New(),
		chunk:  make([]byte, cp.Max),
	}
}

// region backs up region ri and returns its map's ID and its hash.
func (w *worker) region(ctx context.Context, ri int) (crypto.ID, manifest.Hash, error) {
	b := w.b
	off := int64(ri) * manifest.RegionSize
	length := min(manifest.RegionSize, b.size-off)
	if err := w.scan.reset(b.src, off, length); err != nil {
		return crypto.ID{}, manifest.Hash{}, err
	}
	cp := b.r.Config().Chunker
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
		w.ch.ResetWithBoundaries(w.scan, b.r.Polynomial(), cp.Min, cp.Max)
		w.ch.SetAverageBits(cp.AvgBits)
		for {
			c, err := w.ch.Next(w.chunk)
			if err == io.EOF {
				break
			}
			if err != nil {
				return crypto.ID{}, manifest.Hash{}, err
			}
			id := w.hasher.Sum(c.Data)
			w.extents = append(w.extents, manifest.Extent{Offset: uint32(runStart) + uint32(c.Start), Length: uint32(c.Length), ID: id})
			b.nch.Add(1)
			b.data.Add(int64(c.Length))
			if b.pk.claim(id) {
				b.nnew.Add(1)
				b.bnew.Add(int64(c.Length))
				if err := w.store(ctx, pack.TypeData, id, c.Data); err != nil {
					return crypto.ID{}, manifest.Hash{}, err
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return crypto.ID{}, manifest.Hash{}, err
		}
	}
	b.read.Add(w.scan.readBytes)
	m := manifest.RegionMap{Extents: w.extents, Blocks: w.scan.blocks}
	data := m.Encode()
	id := w.hasher.Sum(data)
	if b.pk.claim(id) {
		if err := w.store(ctx, pack.TypeMeta, id, data); err != nil {
			return crypto.ID{}, manifest.Hash{}, err
		}
	}
	b.done.Add(length)
	return id, manifest.RegionHash(w.scan.blocks), nil
}

// store compresses a chunk (when that saves at least 1/32) and hands it to
// the packer, which seals it.
func (w *worker) store(ctx context.Context, typ uint8, id crypto.ID, data []byte) error {
	payload, flags := data, uint8(0)
	comp, err := w.enc.Encode(w.comp, data)
	if err != nil {
		return fmt.Errorf("compressing chunk %s: %w", id, err)
	}
	w.comp = comp
	if len(w.comp) < len(data)-len(data)/32 {
		payload, flags = w.comp, pack.FlagZstd
	}
	return w.b.pk.add(ctx, typ, flags, id, len(data), payload, &w.sealed)
}
