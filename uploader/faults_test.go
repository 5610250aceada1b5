package uploader_test

import (
	"context"
	"errors"
	"github.com/cofferhq/coffer/internal/testutil/testfile"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/restore"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/uploader"
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
