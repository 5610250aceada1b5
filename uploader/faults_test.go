package uploader_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/restore"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/testfile"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
)

var fastRetry = store.RetryPolicy{Attempts: 5, Base: time.Millisecond, Max: 5 * time.Millisecond}

// TestBackupSurvivesTransientFaults: failed uploads and reads are retried
// by the one retry layer and the backup restores byte-identical.
func TestBackupSurvivesTransientFaults(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	local, err := store.OpenLocal(filepath.Join(dir, "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	faulty := store.NewFaulty(local)
	st := store.WithRetry(faulty, fastRetry, nil, nil)
	r := initRepo(t, st)
	// Every pack upload fails twice (once after sending half of it), and
	// the first index write and the snapshot write fail once.
	faulty.Add(store.FaultRule{Op: "put", Prefix: "data/", Times: 3, AfterBytes: 1 << 20})
	faulty.Add(store.FaultRule{Op: "put", Prefix: "index/", Times: 1})
	faulty.Add(store.FaultRule{Op: "put", Prefix: "snapshots/", Times: 1})
	img := filepath.Join(dir, "disk.img")
	writeImage(t, img, 80<<20, 3)
	res, err := backupImage(t, r, img, uploader.Options{Name: "disk"})
	if err != nil {
		t.Fatalf("backup with transient faults failed: %v", err)
	}
	if int64(faulty.Ops("put")) <= res.Packs+2 {
		t.Errorf("%d puts for %d packs: the faults did not fire", faulty.Ops("put"), res.Packs)
	}
	// Reads fail transiently too while restoring.
	faulty.Add(store.FaultRule{Op: "get", Prefix: "data/", Times: 4, AfterBytes: 4096})
	r2, err := repo.Open(ctx, st, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.LoadIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	snap, err := r2.FindSnapshot(ctx, "latest", "")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.img")
	if _, err := restore.New(r2, &snap.Disks[0], restore.Options{}).Run(ctx, out); err != nil {
		t.Fatalf("restore with transient faults: %v", err)
	}
	if testfile.SHA256(t, img) != testfile.SHA256(t, out) {
		t.Fatal("restored image differs")
	}
}

// TestBackupFailsCleanlyOnPermanentFault: a store that refuses writes
// (disk full) fails the backup with that error and no snapshot; once the
// store works again the next run completes reusing the packs stored.
func TestBackupFailsCleanlyOnPermanentFault(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	local, err := store.OpenLocal(filepath.Join(dir, "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	faulty := store.NewFaulty(local)
	st := store.WithRetry(faulty, fastRetry, nil, nil)
	r := initRepo(t, st)
	img := filepath.Join(dir, "disk.img")
	writeImage(t, img, 200<<20, 4)

	// The disk fills up after the first two packs.
	faulty.Add(store.FaultRule{Op: "put", Prefix: "data/", Skip: 2, Times: -1, Err: store.ErrNoSpace})
	if _, err := backupImage(t, r, img, uploader.Options{Name: "disk", Uploaders: 1}); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("backup on a full store returned %v, want ErrNoSpace", err)
	}
	ids, err := r.SnapshotIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 0 {
		t.Fatalf("a failed backup left snapshots %v", ids)
	}
	if n := faulty.Ops("put"); n > 50 {
		t.Errorf("%d puts: a permanent error was retried", n)
	}

	// Space is freed: the next run completes.
	st2 := store.WithRetry(local, fastRetry, nil, nil)
	r2, err := repo.Open(ctx, st2, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.LoadIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	res, err := backupImage(t, r2, img, uploader.Options{Name: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	if res.RecoveredPacks == 0 {
		t.Error("the packs stored before the disk filled were not reused")
	}
}

// dataLists counts a store's listings of packs (the orphan scan).
type dataLists struct {
	store.Store
	n atomic.Int32
}

// Unwrap implements store.Wrapper.
func (d *dataLists) Unwrap() store.Store { return d.Store }

// RemoveStaleTemp passes the local store's cleaner through (store.As).
func (d *dataLists) RemoveStaleTemp(ctx context.Context) (store.TempReport, error) {
	return store.RemoveStaleTemp(ctx, d.Store)
}

func (d *dataLists) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if strings.HasPrefix(prefix, repo.DataPrefix) {
		d.n.Add(1)
	}
	return d.Store.List(ctx, prefix, fn)
}

// TestOrphanScanOnlyAfterUncleanRun: with a state directory, a backup
// lists the repository's packs only when a run on this machine did not end
// cleanly (a failed run, or a mark nobody holds, as kill -9 leaves), and
// then reuses what that run stored; a mark a running backup holds is left
// alone.
func TestOrphanScanOnlyAfterUncleanRun(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	local, err := store.OpenLocal(filepath.Join(dir, "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	lists := &dataLists{Store: local}
	r := initRepo(t, store.WithRetry(lists, fastRetry, nil, nil))
	img := filepath.Join(dir, "disk.img")
	writeImage(t, img, 120<<20, 7)
	marks := func() []string {
		t.Helper()
		m, err := filepath.Glob(filepath.Join(state, "run-*"))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	backup := func(what string, wantScan bool) *uploader.Result {
		t.Helper()
		before := lists.n.Load()
		res, err := backupImage(t, r, img, uploader.Options{Name: "disk", StateDir: state})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if scanned := lists.n.Load() > before; res.OrphanScan != wantScan || scanned != wantScan {
			t.Fatalf("%s: OrphanScan %v, listed packs %v; want %v", what, res.OrphanScan, scanned, wantScan)
		}
		if len(res.Warnings) != 0 {
			t.Fatalf("%s: warnings %q", what, res.Warnings)
		}
		return res
	}

	backup("first run", false)
	backup("after a clean run", false)
	if m := marks(); len(m) != 0 {
		t.Fatalf("clean runs left marks %v", m)
	}

	// A run that fails after storing two packs keeps its mark...
	writeImage(t, img, 120<<20, 8)
	faulty := store.NewFaulty(lists)
	faulty.Add(store.FaultRule{Op: "put", Prefix: "data/", Skip: 2, Times: -1, Err: store.ErrNoSpace})
	rf, err := repo.Open(ctx, store.WithRetry(faulty, fastRetry, nil, nil), []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rf.LoadIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := backupImage(t, rf, img, uploader.Options{Name: "disk", Uploaders: 1, StateDir: state}); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("backup on a full store: %v", err)
	}
	if m := marks(); len(m) != 1 {
		t.Fatalf("a failed run left marks %v, want one", m)
	}
	// ...so the next one scans, reuses its packs and removes the mark.
	r2, err := repo.Open(ctx, store.WithRetry(lists, fastRetry, nil, nil), []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.LoadIndex(ctx, nil); err != nil {
		t.Fatal(err)
	}
	r = r2
	if res := backup("after a failed run", true); res.RecoveredPacks == 0 {
		t.Error("the packs of the failed run were not reused")
	}
	if m := marks(); len(m) != 0 {
		t.Fatalf("marks left after the scan: %v", m)
	}

	// A mark nobody holds (kill -9) makes the next run scan and remove
	// the half-written pack the killed run left; one that a running backup
	// holds does not, and stays.
	dead := filepath.Join(state, "run-00000000000000aa")
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("clean runs left the state directory: %v", err)
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dead, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	half := filepath.Join(dir, "repo", "data", ".tmp-00000000000000cc")
	if err := os.WriteFile(half, []byte("half a pack"), 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * store.TempGrace)
	if err := os.Chtimes(half, past, past); err != nil {
		t.Fatal(err)
	}
	if res := backup("after a killed run", true); res.TempRemoved != 1 {
		t.Errorf("after a killed run: %d temporary files removed, want 1", res.TempRemoved)
	}
	if _, err := os.Stat(dead); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the dead mark is still there: %v", err)
	}
	live := filepath.Join(state, "run-00000000000000bb")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(live)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	backup("beside a running backup", false)
	if m := marks(); len(m) != 1 || m[0] != live {
		t.Fatalf("marks %v, want only the running backup's", m)
	}
}

// slowPuts holds every pack put until release is closed, and tells
// started when the first one begins.
type slowPuts struct {
	store.Store
	started chan struct{}
	once    sync.Once
	release chan struct{}
}

func (s *slowPuts) Unwrap() store.Store { return s.Store }

func (s *slowPuts) Put(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	if strings.HasPrefix(name, repo.DataPrefix) {
		s.once.Do(func() { close(s.started) })
		<-s.release
	}
	return s.Store.Put(ctx, name, r, size)
}

// TestInterruptedBackupFinishesPacksInFlight: a backup cancelled (SIGTERM)
// while a pack is being uploaded lets that upload finish and indexes it;
// the run ends cleanly, so the next one lists no packs, and it stores
// nothing the interrupted one had already stored.
func TestInterruptedBackupFinishesPacksInFlight(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	local, err := store.OpenLocal(filepath.Join(dir, "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	lists := &dataLists{Store: local}
	slow := &slowPuts{Store: lists, started: make(chan struct{}), release: make(chan struct{})}
	r := initRepo(t, store.WithRetry(slow, fastRetry, nil, nil))
	img := filepath.Join(dir, "disk.img")
	writeImage(t, img, 120<<20, 9)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-slow.started
		cancel()
		time.Sleep(100 * time.Millisecond)
		close(slow.release)
	}()
	src, err := source.OpenImage(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	b, err := uploader.New(r, src, uploader.Options{Name: "disk", Uploaders: 1, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted backup: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(state, "run-*")); len(m) != 0 {
		t.Fatalf("an interrupted run that finished its uploads left marks %v", m)
	}
	r2, err := repo.Open(context.Background(), store.WithRetry(lists, fastRetry, nil, nil), []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.LoadIndex(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if r2.Index.Packs() == 0 {
		t.Fatal("the pack in flight was not indexed")
	}
	var packs int
	_ = local.List(context.Background(), repo.DataPrefix, func(store.Info) error { packs++; return nil })
	if packs != r2.Index.Packs() {
		t.Fatalf("%d packs stored, %d indexed", packs, r2.Index.Packs())
	}
	before := lists.n.Load()
	res, err := backupImage(t, r2, img, uploader.Options{Name: "disk", StateDir: state})
	if err != nil || res.OrphanScan || lists.n.Load() != before {
		t.Fatalf("the next run: %+v %v (listed packs: %v)", res, err, lists.n.Load() != before)
	}
}
