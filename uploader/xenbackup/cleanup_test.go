package xenbackup_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/xenapi"
	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
)

// A base an older Coffer snapshot kept, which a run killed after its
// commit left in the pool, is removed by the next night; the newest
// night's base stays.
func TestOlderBasesAreRemoved(t *testing.T) {
	p := newPool(t, []vmSpec{{"web", []int64{8 << 20}, false}})
	res := p.night()
	ctx := context.Background()
	x, err := xenapi.Login(ctx, xenapi.Config{URL: p.info.URL, User: "root", Password: password, Fingerprint: p.info.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	defer x.Logout(ctx)
	// A snapshot VDI left alone in the pool, as a killed run leaves last
	// night's base: a snapshot whose VM is gone.
	vms, err := x.GetVMsByName(ctx, "web")
	if err != nil || len(vms) != 1 {
		t.Fatal(vms, err)
	}
	snap, err := x.SnapshotVM(ctx, vms[0], "left by a killed run")
	if err != nil {
		t.Fatal(err)
	}
	snapVM, err := x.GetVM(ctx, snap)
	if err != nil {
		t.Fatal(err)
	}
	vbd, err := x.GetVBD(ctx, snapVM.VBDs[0])
	if err != nil {
		t.Fatal(err)
	}
	left, err := x.GetVDI(ctx, vbd.VDI)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.DestroyVM(ctx, snap); err != nil {
		t.Fatal(err)
	}
	// An older Coffer snapshot of the VM that names it as its base.
	newest, err := p.r.FindSnapshot(ctx, res.VMs[0].SnapshotID, "")
	if err != nil {
		t.Fatal(err)
	}
	older := p.olderSnapshot(newest.Snapshot, left.UUID)
	s, err := uploader.StartSession(ctx, p.r, uploader.SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, older); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}

	res = p.night()
	if res.Cleanup.StaleBases != 1 || len(res.Failed()) != 0 {
		t.Fatalf("cleanup removed %d older bases (want 1); failed VMs: %d", res.Cleanup.StaleBases, len(res.Failed()))
	}
	if _, err := x.GetVDIByUUID(ctx, left.UUID); !xenapi.IsCode(err, xenapi.ErrUUIDInvalid) {
		t.Fatalf("the older base is still in the pool: %v", err)
	}
	p.checkVM(res, "web", manifest.XenReadChanged)
	p.checkClean(1)
}

// olderSnapshot is a Coffer snapshot of the same VM an hour before newest,
// whose disk kept the snapshot VDI base: a tiny disk of its own.
func (p *testPool) olderSnapshot(newest *manifest.Snapshot, base string) *manifest.Snapshot {
	p.t.Helper()
	ctx := context.Background()
	img := filepath.Join(p.t.TempDir(), "tiny.img")
	if err := p.sim.Export(xapisim.DiskRef{VM: "web", N: 0}, img); err != nil {
		p.t.Fatal(err)
	}
	src, err := source.OpenImage(img)
	if err != nil {
		p.t.Fatal(err)
	}
	defer src.Close()
	s, err := uploader.StartSession(ctx, p.r, uploader.SessionOptions{})
	if err != nil {
		p.t.Fatal(err)
	}
	defer s.Close(ctx)
	d, err := s.BackupDisk(ctx, uploader.DiskJob{Source: src})
	if err != nil {
		p.t.Fatal(err)
	}
	x := *newest.Disks[0].Xen
	x.SnapshotVDI, x.Kept, x.Read = base, manifest.XenKeptData, manifest.XenReadFull
	d.Xen = &x
	vm := *newest.Source.Xen
	return &manifest.Snapshot{Version: manifest.SnapshotVersion, Time: newest.Time.Add(-time.Hour), Name: newest.Name,
		Source: manifest.Source{Kind: "xen", Xen: &vm}, Disks: []manifest.Disk{d}}
}
