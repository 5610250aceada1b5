package uploader_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/restore"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/testfile"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
)

// Three VMs back up into one session at the same time, one of them with
// two disks; each VM's snapshot is committed as soon as its disks are done,
// while the others still run. A fresh open of the repository restores every
// disk of every snapshot byte-identical, which holds only if each commit
// made every chunk its disks used durable and indexed first, including
// chunks another VM's disk claimed.
func TestSessionCommitsVMsOneByOne(t *testing.T) {
	ctx := context.Background()
	dir, st, r := newLocalRepo(t)
	// Shared content between VMs (same seed): the second VM's chunks are
	// mostly claimed by the first.
	vms := map[string][]uint64{"a": {1}, "b": {1, 2}, "c": {3}}
	images := map[string][]string{}
	for name, seeds := range vms {
		for i, seed := range seeds {
			p := filepath.Join(dir, name+string(rune('0'+i))+".img")
			writeImage(t, p, 70<<20+int64(i)*4096, seed)
			images[name] = append(images[name], p)
		}
	}
	s, err := uploader.StartSession(ctx, r, uploader.SessionOptions{Workers: 2, StateDir: filepath.Join(dir, "state")})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ids := map[string]string{}
	var wg sync.WaitGroup
	for name, paths := range images {
		wg.Go(func() {
			var disks []manifest.Disk
			for i, p := range paths {
				src, err := source.OpenImage(p)
				if err != nil {
					t.Error(err)
					return
				}
				d, err := s.BackupDisk(ctx, uploader.DiskJob{Source: src, Index: i})
				src.Close()
				if err != nil {
					t.Error(err)
					return
				}
				disks = append(disks, d)
			}
			id, err := s.Commit(ctx, &manifest.Snapshot{Name: "vm-" + name, Source: manifest.Source{Kind: "image"}, Disks: disks})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[name] = id
			mu.Unlock()
			// Before the session ends, as a crash right now would leave it.
			checkRestores(t, st, map[string]string{name: id}, images)
		})
	}
	wg.Wait()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BackupDisk(ctx, uploader.DiskJob{}); err == nil {
		t.Fatal("a closed session backed up a disk")
	}
	checkRestores(t, st, ids, images)
}

// checkRestores opens the repository afresh and restores every disk of
// the snapshots ids (VM name -> snapshot ID), comparing with the images.
func checkRestores(t *testing.T, st store.Store, ids map[string]string, images map[string][]string) {
	t.Helper()
	ctx := context.Background()
	r, err := repo.Open(ctx, st, []byte("pw"))
	if err != nil {
		t.Error(err)
		return
	}
	if err := r.LoadIndex(ctx, nil); err != nil {
		t.Error(err)
		return
	}
	for name, id := range ids {
		snap, err := r.FindSnapshot(ctx, id, "")
		if err != nil {
			t.Error(err)
			return
		}
		if len(snap.Disks) != len(images[name]) {
			t.Errorf("VM %s: snapshot has %d disks, want %d", name, len(snap.Disks), len(images[name]))
			return
		}
		for i, d := range snap.Disks {
			out := filepath.Join(t.TempDir(), "out.img")
			if _, err := restore.New(r, &d, restore.Options{}).Run(ctx, out); err != nil {
				t.Errorf("VM %s disk %d: %v", name, i, err)
				return
			}
			if testfile.SHA256(t, out) != testfile.SHA256(t, images[name][i]) {
				t.Errorf("VM %s disk %d restored differently", name, i)
			}
		}
	}
}
