package uploader

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/zstdenc"
)

// SessionOptions tune a backup session.
type SessionOptions struct {
	Workers   int         // region workers per disk; default GOMAXPROCS
	Uploaders int         // concurrent pack uploads; default 4
	Clock     clock.Clock // snapshot times; default the wall clock
	// StateDir holds this machine's run marks for the repository (see
	// runmark.go): with it, a session lists the repository's packs only
	// after one that did not end cleanly. Empty: list every time.
	StateDir string
	// CacheDir keeps what this machine may remember of the repository
	// between runs: the packs of each region map, so a receipt does not
	// read every map each night. Empty: nothing is kept.
	CacheDir string
}

// Session is one backup run into one repository: it owns the packer, the
// uploaders and the index cadence. Any number of disks are backed up into
// it (one after another or at the same time), and snapshots naming them
// are committed one by one; Close (or Abort) ends it. Chunks deduplicate
// across every disk of a session.
//
//	s, err := StartSession(ctx, r, opt)
//	disk, err := s.BackupDisk(ctx, DiskJob{...})
//	id, err := s.Commit(ctx, &manifest.Snapshot{... Disks: []manifest.Disk{disk}})
//	err = s.Close(ctx)
type Session struct {
	r   *repo.Repo
	opt SessionOptions
	pk  *packer

	ctx    context.Context // cancelled when an upload fails or on Abort
	cancel context.CancelCauseFunc
	up     errgroup.Group

	mark    *runMark
	closeMu sync.Mutex
	closed  bool
	active  sync.WaitGroup // disks being backed up and commits

	info SessionInfo
	gc   *gcSession // the vault collector's upload session, if any
	// mapPacks is the cache of region maps' packs, saved when the session
	// ends cleanly.
	mapPacks *repo.MapPackCache
}

// SessionInfo says what starting a session found and did.
type SessionInfo struct {
	// OrphanScan says whether the session listed the repository's packs
	// to index those an earlier run left unindexed; RecoveredPacks is how
	// many it found.
	OrphanScan     bool
	RecoveredPacks int
	// TempRemoved and TempRemovedBytes count the temporary files of
	// writers that died mid-put (a killed backup on a local directory),
	// removed before this run.
	TempRemoved      int
	TempRemovedBytes int64
	// UnusablePacks is how many packs the vault's garbage collector named
	// as marked or deleted; ForgottenChunks how many index entries went
	// with them (their chunks are stored again if a disk has them).
	UnusablePacks   int
	ForgottenChunks int
	// Warnings are problems that did not stop the session.
	Warnings []string
}

// ErrSessionClosed is returned by a session used after Close or Abort.
var ErrSessionClosed = errors.New("internal error: the backup session is closed")

func (o SessionOptions) withDefaults() SessionOptions {
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Uploaders <= 0 {
		o.Uploaders = 4
	}
	o.Clock = clock.Or(o.Clock)
	return o
}

// newSession prepares a session without starting it.
func newSession(r *repo.Repo, opt SessionOptions) *Session {
	opt = opt.withDefaults()
	// A data pack buffer per upload in progress and one being filled. A
	// store that defers durability (a local directory) frees the buffer
	// before its fsync, so two buffers in flight keep twice as many
	// uploaders busy.
	buffers := opt.Uploaders + 1
	if store.DefersPuts(r.Store()) {
		buffers = min(buffers, 3)
	}
	return &Session{r: r, opt: opt, pk: newPacker(r, buffers)}
}

// StartSession starts a backup session into r, whose index must be
// loaded. It first indexes what runs that died left behind (see
// recoverDeadRuns), then starts the uploaders.
func StartSession(ctx context.Context, r *repo.Repo, opt SessionOptions) (*Session, error) {
	s := newSession(r, opt)
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Session) start(ctx context.Context) error {
	scan, dead := true, []string(nil)
	if s.opt.StateDir != "" {
		mark, d, err := beginRun(s.opt.StateDir)
		if err != nil {
			s.info.Warnings = append(s.info.Warnings, err.Error()+"; the repository's packs are listed on every run")
		} else {
			s.mark, dead = mark, d
			scan = len(dead) > 0 || len(newSkippedIndexes(s.opt.StateDir, s.r.SkippedIndexFiles())) > 0
		}
	}
	s.info.OrphanScan = scan
	if scan {
		if err := s.recoverDeadRuns(ctx, dead); err != nil {
			s.endMark(false)
			return err
		}
	}
	if err := s.beginGCSession(ctx); err != nil {
		s.endMark(false)
		return err
	}
	if s.opt.CacheDir != "" {
		s.mapPacks = repo.OpenMapPackCache(filepath.Join(s.opt.CacheDir, "map-packs"))
		s.r.SetMapPackCache(s.mapPacks)
	}
	// Uploaders outlive any one disk (they drain the last packs), so they
	// share a context of their own; an upload failure cancels it, and with
	// it every disk of the session.
	s.ctx, s.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	for i := 0; i < s.opt.Uploaders; i++ {
		s.up.Go(func() error {
			err := s.pk.uploader(s.ctx)
			if err != nil {
				s.cancel(err)
			}
			return err
		})
	}
	return nil
}

// Info returns what starting the session found.
func (s *Session) Info() SessionInfo { return s.info }

// Stored returns the bytes and the number of packs uploaded so far, and
// how long disk workers waited for the uploaders.
func (s *Session) stored() (bytes, packs, waited int64) {
	return s.pk.storedBytes.Load(), s.pk.packs.Load(), s.pk.waited.Load()
}

// recoverDeadRuns indexes the packs of runs that did not end cleanly (and
// those of skipped index files), removes their half-written files, and
// then forgets the marks of dead runs — unless a temporary file was too
// young to judge: the marks then stay, so the next run looks again instead
// of leaving it for good.
func (s *Session) recoverDeadRuns(ctx context.Context, dead []string) error {
	recovered, err := s.r.IndexOrphanPacks(ctx, true)
	if err != nil {
		return err
	}
	s.info.RecoveredPacks = recovered
	// What the run that died left half-written is garbage (its finished
	// packs were just indexed); failing to remove it is no reason not to
	// back up.
	temp, terr := store.RemoveStaleTemp(ctx, s.r.Store())
	s.info.TempRemoved, s.info.TempRemovedBytes = temp.Removed, temp.Bytes
	if terr != nil {
		s.info.Warnings = append(s.info.Warnings, "temporary files of an interrupted backup could not all be removed: "+terr.Error())
	}
	if temp.Young == 0 && terr == nil {
		if merr := removeMarks(dead); merr != nil {
			s.info.Warnings = append(s.info.Warnings, "removing the marks of earlier runs: "+merr.Error())
		}
	}
	if s.opt.StateDir != "" {
		if serr := rememberSkippedIndexes(s.opt.StateDir, s.r.SkippedIndexFiles()); serr != nil {
			s.info.Warnings = append(s.info.Warnings, "state directory: "+serr.Error())
		}
	}
	return nil
}

// diskContext returns a context cancelled with ctx or when the session
// fails, and whether the session is still open.
func (s *Session) diskContext(ctx context.Context) (context.Context, context.CancelFunc, error) {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed || s.cancel == nil {
		return nil, nil, ErrSessionClosed
	}
	s.active.Add(1)
	dctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.ctx, func() { cancel(context.Cause(s.ctx)) })
	return dctx, func() { stop(); cancel(nil); s.active.Done() }, nil
}

// Commit makes every chunk the session's disks have used so far durable
// and indexed, then saves snap (its Time is set when zero) and returns its
// ID. Disks still being backed up go on meanwhile; only the chunks they
// claimed before Commit was called are waited for.
func (s *Session) Commit(ctx context.Context, snap *manifest.Snapshot) (string, error) {
	ctx, done, err := s.diskContext(ctx)
	if err != nil {
		return "", err
	}
	defer done()
	if err := s.pk.settle(ctx); err != nil {
		return "", s.cause(err)
	}
	if err := s.pk.addToIndexFile(ctx, pack.ID{}, nil, true); err != nil {
		return "", err
	}
	if snap.Time.IsZero() {
		snap.Time = s.opt.Clock.Now().UTC()
	}
	if snap.Version == 0 {
		snap.Version = manifest.SnapshotVersion
	}
	return s.r.SaveSnapshot(ctx, snap)
}

// cause returns the upload failure behind err when the session failed.
func (s *Session) cause(err error) error {
	if c := context.Cause(s.ctx); c != nil && s.ctx.Err() != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

// Close ends the session: it waits for the disks still being backed up,
// uploads and indexes what is left, stops the uploaders and marks the run
// as ended cleanly. Chunks uploaded but not named by a committed snapshot
// are garbage for GC to collect.
func (s *Session) Close(ctx context.Context) error {
	if !s.markClosed() {
		return nil
	}
	s.active.Wait()
	err := s.pk.flushOpen(ctx, ^uint64(0))
	close(s.pk.uploads)
	if uerr := s.up.Wait(); uerr != nil {
		err = uerr
	}
	if err == nil {
		err = s.pk.addToIndexFile(ctx, pack.ID{}, nil, true)
	}
	s.cancel(nil)
	s.endGCSession(ctx)
	if s.mapPacks != nil && err == nil {
		if serr := s.mapPacks.Save(); serr != nil {
			s.info.Warnings = append(s.info.Warnings, "saving the map cache: "+serr.Error())
		}
	}
	s.endMark(err == nil)
	if err != nil {
		return fmt.Errorf("finishing the backup session: %w", err)
	}
	return nil
}

// Abort ends a session that failed: disks still being backed up are
// cancelled and waited for, uploads stop, and the run is left marked as
// not ended cleanly, so the next run indexes what it uploaded.
func (s *Session) Abort() {
	if !s.markClosed() {
		return
	}
	s.cancel(context.Canceled)
	s.active.Wait()
	close(s.pk.uploads)
	_ = s.up.Wait()
	s.endGCSession(context.Background())
	s.endMark(false)
}

// StopGrace bounds how long Stop lets the packs already handed to the
// uploaders finish.
const StopGrace = time.Minute

// Stop ends a session that was interrupted (SIGTERM, SIGINT): the disks
// stop (their context is already cancelled), the open, partly filled packs
// are dropped, but every full pack already handed to the uploaders is
// finished, for StopGrace at most, and indexed, so the next run reuses it
// without a listing. A pack still unfinished after StopGrace is abandoned
// as Abort does, and the next run indexes what reached the store.
func (s *Session) Stop() {
	if !s.markClosed() {
		return
	}
	s.active.Wait()
	close(s.pk.uploads)
	done := make(chan error, 1)
	go func() { done <- s.up.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(StopGrace):
		s.cancel(context.Canceled)
		err = <-done
		if err == nil {
			err = context.Canceled
		}
	}
	if err == nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), StopGrace)
		err = s.pk.addToIndexFile(ctx, pack.ID{}, nil, true)
		cancel()
	}
	s.cancel(context.Canceled)
	s.endGCSession(context.Background())
	s.endMark(err == nil)
}

// endAfter ends a session whose disk or commit failed: Stop when ctx was
// cancelled (an interruption: what is in flight is kept), else Abort.
func (s *Session) endAfter(ctx context.Context) {
	if ctx.Err() != nil {
		s.Stop()
		return
	}
	s.Abort()
}

func (s *Session) markClosed() bool {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed || s.cancel == nil {
		return false
	}
	s.closed = true
	return true
}

func (s *Session) endMark(clean bool) {
	if s.mark == nil {
		return
	}
	if clean {
		s.mark.end()
	} else {
		s.mark.abandon()
	}
	s.mark = nil
}

// maxMetaChunk is the largest document PutMeta stores as one chunk.
const maxMetaChunk = 64 << 20

// PutMeta stores a document (a VM's metadata, say) as a metadata chunk,
// once per repository, and returns its ID. Like a disk's chunks, it is
// durable once a snapshot committed after it names it.
func (s *Session) PutMeta(ctx context.Context, data []byte) (crypto.ID, error) {
	if len(data) == 0 || len(data) > maxMetaChunk {
		return crypto.ID{}, fmt.Errorf("a metadata document of %d bytes: it must have 1 byte to %d MiB", len(data), maxMetaChunk>>20)
	}
	ctx, done, err := s.diskContext(ctx)
	if err != nil {
		return crypto.ID{}, err
	}
	defer done()
	w := &worker{d: &diskRun{s: s, c: &DiskCounters{}}, hasher: s.r.Keys().NewIDHasher(), enc: zstdenc.New()}
	id, err := w.storeMeta(ctx, data)
	if err != nil {
		return crypto.ID{}, s.cause(err)
	}
	return id, nil
}

// Stored returns the bytes and the number of packs the session uploaded
// so far.
func (s *Session) Stored() (bytes, packs int64) {
	b, p, _ := s.stored()
	return b, p
}
