package uploader_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/uploader"
)

// TestSnapshotTimeFromClock: the snapshot's time is the injected clock's,
// not the wall clock's.
func TestSnapshotTimeFromClock(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenLocal(filepath.Join(dir, "repo"), true)
	if err != nil {
		t.Fatal(err)
	}
	r := initRepo(t, st)
	img := filepath.Join(dir, "disk.img")
	writeImage(t, img, 3<<20, 7)
	at := time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)
	res, err := backupImage(t, r, img, uploader.Options{Name: "disk", Clock: clocktest.New(at)})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.FindSnapshot(context.Background(), res.SnapshotID, "")
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Time.Equal(at) {
		t.Fatalf("snapshot time %v, want the clock's %v", snap.Time, at)
	}
}
