package xenbackup_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/restore"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/testfile"
	"github.com/cofferhq/coffer/internal/xenapi"
	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
	"github.com/cofferhq/coffer/uploader/xenbackup"
)

func init() { os.Setenv("COFFER_INSECURE_TEST_KDF", "1") }

const password = "pool-password"

// testPool is a simulated pool served on loopback, and a repository.
type testPool struct {
	t    *testing.T
	dir  string
	sim  *xapisim.Sim
	info xapisim.ServeInfo
	st   store.Store
	r    *repo.Repo
	// unusable is the nights' Options.UnusableParents.
	unusable map[string]string
}

// vmSpec is a VM of the test pool: its disks' sizes and whether it has a
// CD drive.
type vmSpec struct {
	name  string
	disks []int64
	cd    bool
}

// threeVMs is the pool of the issue: one VM with two disks, one with a CD.
var threeVMs = []vmSpec{
	{"web", []int64{80 << 20, 24<<20 + 4096*3}, false},
	{"db", []int64{96 << 20}, true},
	{"mail", []int64{40 << 20}, false},
}

func newPool(t *testing.T, vms []vmSpec) *testPool {
	t.Helper()
	dir := t.TempDir()
	sim, err := xapisim.Init(filepath.Join(dir, "state"), password, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, vm := range vms {
		if _, err := sim.CreateVM(vm.name, vm.disks, vm.cd); err != nil {
			t.Fatal(err)
		}
		for n, size := range vm.disks {
			img := filepath.Join(dir, "seed.img")
			if err := diskgen.Generate(img, size, uint64(10*i+n+1), diskgen.Options{}); err != nil {
				t.Fatal(err)
			}
			if err := sim.Import(xapisim.DiskRef{VM: vm.name, N: n}, img); err != nil {
				t.Fatal(err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Serve(ctx, xapisim.ServeConfig{Listen: "127.0.0.1:0", NBDListen: "127.0.0.1:0"}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("simulator: %v", err)
		}
	})
	p := &testPool{t: t, dir: dir, sim: sim}
	p.info = waitServe(t, filepath.Join(sim.Dir, "serve.json"), done)
	if p.st, err = store.OpenLocal(filepath.Join(dir, "repo"), true); err != nil {
		t.Fatal(err)
	}
	if p.r, err = repo.Init(ctx, p.st, []byte("pw"), repo.DefaultConfig()); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitServe(t *testing.T, path string, done chan error) xapisim.ServeInfo {
	t.Helper()
	for i := 0; i < 500; i++ {
		b, err := os.ReadFile(path)
		if err == nil {
			var info xapisim.ServeInfo
			if err := json.Unmarshal(b, &info); err != nil {
				t.Fatal(err)
			}
			return info
		}
		select {
		case err := <-done:
			t.Fatalf("the simulator stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("the simulator did not start")
	return xapisim.ServeInfo{}
}

// night runs one night over the pool's VMs (all of them unless named).
func (p *testPool) night(vms ...string) *xenbackup.Result {
	p.t.Helper()
	ctx := context.Background()
	x, err := xenapi.Login(ctx, xenapi.Config{URL: p.info.URL, User: "root", Password: password, Fingerprint: p.info.Fingerprint})
	if err != nil {
		p.t.Fatal(err)
	}
	defer x.Logout(ctx)
	r, err := repo.Open(ctx, p.st, []byte("pw"))
	if err != nil {
		p.t.Fatal(err)
	}
	if err := r.LoadIndex(ctx, nil); err != nil {
		p.t.Fatal(err)
	}
	res, err := xenbackup.Run(ctx, xenbackup.Options{Xen: x, Repo: r, VMs: vms, All: len(vms) == 0, UnusableParents: p.unusable,
		Session: uploader.SessionOptions{Workers: 2, StateDir: filepath.Join(p.dir, "runs")}})
	if err != nil {
		p.t.Fatal(err)
	}
	p.r = r
	return res
}

// export writes disk n of a VM as it is now to a file.
func (p *testPool) export(vm string, n int) string {
	p.t.Helper()
	out := filepath.Join(p.t.TempDir(), vm+".img")
	if err := p.sim.Export(xapisim.DiskRef{VM: vm, N: n}, out); err != nil {
		p.t.Fatal(err)
	}
	return out
}

// write is the guest writing into percent of a disk's blocks.
func (p *testPool) write(vm string, n int, percent float64, seed uint64) {
	p.t.Helper()
	size, err := p.sim.DiskSize(xapisim.DiskRef{VM: vm, N: n})
	if err != nil {
		p.t.Fatal(err)
	}
	blocks, err := xapisim.RandomBlocks(size, percent, seed)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := p.sim.WriteBlocks(xapisim.DiskRef{VM: vm, N: n}, blocks, seed); err != nil {
		p.t.Fatal(err)
	}
}

// checkClean asserts the pool holds no snapshot VM, no disk attached to
// the control domain and no NBD connection, and that every disk of the
// VMs has exactly one base for the next night.
func (p *testPool) checkClean(wantBases int) {
	p.t.Helper()
	l, err := p.sim.List()
	if err != nil {
		p.t.Fatal(err)
	}
	for _, vm := range l.VMs {
		if vm.IsSnapshot {
			p.t.Errorf("snapshot %q left in the pool", vm.NameLabel)
		}
	}
	if len(l.Dom0Attachments) != 0 || l.NBDConnections != 0 {
		p.t.Errorf("%d disks attached to the control domain, %d NBD connections left", len(l.Dom0Attachments), l.NBDConnections)
	}
	bases := 0
	for _, v := range l.VDIs {
		if v.IsSnapshot {
			bases++
		}
	}
	if bases != wantBases {
		p.t.Errorf("%d snapshot VDIs in the pool, want %d (one base per disk)", bases, wantBases)
	}
}

// checkVM asserts a VM's night went as expected and restores its disks,
// comparing them with the disks as they are now.
func (p *testPool) checkVM(res *xenbackup.Result, name, read string) xenbackup.VMResult {
	p.t.Helper()
	for _, v := range res.VMs {
		if v.Name != name {
			continue
		}
		if v.Err != nil {
			p.t.Fatalf("VM %s failed: %v", name, v.Err)
		}
		snap, err := p.r.FindSnapshot(context.Background(), v.SnapshotID, "")
		if err != nil {
			p.t.Fatal(err)
		}
		for i, d := range snap.Disks {
			if d.Xen.Read != read {
				p.t.Errorf("VM %s disk %d: read %s (%s), want %s", name, i, d.Xen.Read, d.Xen.Reason, read)
			}
			p.checkRestore(&d, p.export(name, i))
		}
		return v
	}
	p.t.Fatalf("VM %s is not in the night's results", name)
	return xenbackup.VMResult{}
}

func (p *testPool) checkRestore(d *manifest.Disk, want string) {
	p.t.Helper()
	out := filepath.Join(p.t.TempDir(), "restored.img")
	if _, err := restore.New(p.r, d, restore.Options{}).Run(context.Background(), out); err != nil {
		p.t.Fatal(err)
	}
	if testfile.SHA256(p.t, out) != testfile.SHA256(p.t, want) {
		p.t.Fatalf("disk %d restored differently from the disk it was read from", d.Index)
	}
}

// fullRead backs an image up with a whole read and returns its record.
func (p *testPool) fullRead(img string) manifest.Disk {
	p.t.Helper()
	ctx := context.Background()
	s, err := uploader.StartSession(ctx, p.r, uploader.SessionOptions{})
	if err != nil {
		p.t.Fatal(err)
	}
	defer s.Close(ctx)
	src, err := source.OpenImage(img)
	if err != nil {
		p.t.Fatal(err)
	}
	defer src.Close()
	d, err := s.BackupDisk(ctx, uploader.DiskJob{Source: src, Chunking: manifest.ChunkingBlocks})
	if err != nil {
		p.t.Fatal(err)
	}
	return d
}

// The pool: night 1 reads every disk; the guests write into 1% of
// the blocks; night 2 reads only the changed blocks (at most 3% of the
// disks), stores exactly what a full read would, and both nights restore
// to the disks as they were. CDs are never backed up, and the pool is left
// with one changed-block log per disk and nothing else.
func TestTwoNightsOfThreeVMs(t *testing.T) {
	p := newPool(t, threeVMs)
	res := p.night()
	if len(res.Failed()) != 0 {
		t.Fatalf("night 1: %d VMs failed: %v", len(res.Failed()), res.Failed()[0].Err)
	}
	for _, vm := range threeVMs {
		v := p.checkVM(res, vm.name, manifest.XenReadFull)
		if len(v.Disks) != len(vm.disks) {
			t.Fatalf("VM %s: %d disks backed up, it has %d (and a CD: %v)", vm.name, len(v.Disks), len(vm.disks), vm.cd)
		}
	}
	p.checkClean(4)

	var total int64
	for i, vm := range threeVMs {
		for n, size := range vm.disks {
			p.write(vm.name, n, 1, uint64(100+i*10+n))
			total += size
		}
	}
	res = p.night()
	var read int64
	for _, vm := range threeVMs {
		v := p.checkVM(res, vm.name, manifest.XenReadChanged)
		for n, d := range v.Disks {
			read += d.ReadBytes
			snap, _ := p.r.FindSnapshot(context.Background(), v.SnapshotID, "")
			full := p.fullRead(p.export(vm.name, n))
			if full.Digest != snap.Disks[n].Digest || strings.Join(full.Lists, ",") != strings.Join(snap.Disks[n].Lists, ",") {
				t.Fatalf("VM %s disk %d: the changed-block night differs from a full read", vm.name, n)
			}
			if snap.Disks[n].Chunking != manifest.ChunkingBlocks || d.Fetched != 0 {
				t.Fatalf("VM %s disk %d: chunking %q, %d bytes read back; want a chunk per block and nothing read back", vm.name, n, snap.Disks[n].Chunking, d.Fetched)
			}
		}
	}
	t.Logf("night 2 read %d of %d bytes (%.2f%%)", read, total, 100*float64(read)/float64(total))
	if read == 0 || read*100 > 3*total {
		t.Fatalf("night 2 read %d of %d bytes; want above 0 and at most 3%%", read, total)
	}
	p.checkClean(4)
}
