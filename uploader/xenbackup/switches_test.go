package xenbackup_test

import (
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
	"github.com/cofferhq/coffer/uploader/xenbackup"
)

// twoVMs is a small pool for the field failures.
var twoVMs = []vmSpec{
	{"web", []int64{12<<20 + 4096}, true},
	{"db", []int64{8 << 20}, false},
}

func (p *testPool) setSwitch(arg string) {
	p.t.Helper()
	if err := p.sim.SetSwitch(arg); err != nil {
		p.t.Fatal(err)
	}
}

func (p *testPool) clearSwitch(name string) {
	p.t.Helper()
	if err := p.sim.ClearSwitch(name); err != nil {
		p.t.Fatal(err)
	}
}

// reason returns why a VM's disk 0 was read whole ("" for a changed-block
// read), failing the test when the VM failed.
func reason(t *testing.T, res *xenbackup.Result, vm string) string {
	t.Helper()
	for _, v := range res.VMs {
		if v.Name == vm {
			if v.Err != nil {
				t.Fatalf("VM %s failed: %v", vm, v.Err)
			}
			if v.Disks[0].Read == manifest.XenReadChanged {
				return ""
			}
			return v.Disks[0].Reason
		}
	}
	t.Fatalf("VM %s is not in the results", vm)
	return ""
}

// readOf returns how a VM's disk 0 was read.
func readOf(t *testing.T, res *xenbackup.Result, vm string) string {
	t.Helper()
	if reason(t, res, vm) == "" {
		return manifest.XenReadChanged
	}
	return manifest.XenReadFull
}

// failure returns a VM's error, failing the test when it did not fail.
func failure(t *testing.T, res *xenbackup.Result, vm string) error {
	t.Helper()
	for _, v := range res.VMs {
		if v.Name == vm && v.Err != nil {
			return v.Err
		}
	}
	t.Fatalf("VM %s did not fail", vm)
	return nil
}

// Each failure of the field either makes the night read whole disks and
// say why, or fails that VM with a clear error, leaving the pool clean;
// and once it is gone, the next nights go back to changed blocks.
func TestFieldFailures(t *testing.T) {
	cases := []struct {
		name   string
		before func(p *testPool) // after night 1, before night 2
		check  func(t *testing.T, res *xenbackup.Result)
		after  func(p *testPool) // before night 3
		bases  int               // snapshot VDIs left after night 2
	}{
		{"no CBT licence", func(p *testPool) {
			p.setSwitch(xapisim.SwitchNoCBTLicence)
			p.sim.SetCBT(xapisim.DiskRef{VM: "web", N: 0}, false)
		}, func(t *testing.T, res *xenbackup.Result) {
			if r := reason(t, res, "web"); !strings.Contains(r, "licence") {
				t.Errorf("web read whole because %q; want the licence named", r)
			}
		}, func(p *testPool) { p.clearSwitch(xapisim.SwitchNoCBTLicence) }, 1},
		{"old version", func(p *testPool) { p.setSwitch(xapisim.SwitchOldVersion) }, func(t *testing.T, res *xenbackup.Result) {
			if err := failure(t, res, "web"); !strings.Contains(err.Error(), "NBD") {
				t.Errorf("web failed with %v; want NBD named", err)
			}
		}, func(p *testPool) { p.clearSwitch(xapisim.SwitchOldVersion) }, 2},
		{"NBD disabled", func(p *testPool) { p.setSwitch(xapisim.SwitchNBDDisabled) }, func(t *testing.T, res *xenbackup.Result) {
			if err := failure(t, res, "db"); !strings.Contains(err.Error(), "purpose nbd") {
				t.Errorf("db failed with %v; want the fix named", err)
			}
		}, func(p *testPool) { p.clearSwitch(xapisim.SwitchNBDDisabled) }, 2},
		{"storage migration", func(p *testPool) {
			if _, err := p.sim.Migrate(xapisim.DiskRef{VM: "web", N: 0}); err != nil {
				p.t.Fatal(err)
			}
		}, func(t *testing.T, res *xenbackup.Result) {
			if r := reason(t, res, "web"); !strings.Contains(r, "migration") {
				t.Errorf("web read whole because %q; want the migration named", r)
			}
		}, nil, 2},
		{"resized", func(p *testPool) {
			if err := p.sim.Resize(xapisim.DiskRef{VM: "db", N: 0}, 9<<20); err != nil {
				p.t.Fatal(err)
			}
		}, func(t *testing.T, res *xenbackup.Result) {
			if r := reason(t, res, "db"); !strings.Contains(r, "resized") {
				t.Errorf("db read whole because %q; want the resize named", r)
			}
		}, nil, 2},
		{"CBT turned off and on", func(p *testPool) {
			p.sim.SetCBT(xapisim.DiskRef{VM: "db", N: 0}, false)
		}, func(t *testing.T, res *xenbackup.Result) {
			if r := reason(t, res, "db"); r == "" {
				t.Error("db read changed blocks across a broken changed-block log")
			}
		}, nil, 2},
		{"snapshot fails", func(p *testPool) { p.setSwitch(xapisim.SwitchSnapshotFail + "=web") }, func(t *testing.T, res *xenbackup.Result) {
			if err := failure(t, res, "web"); !strings.Contains(err.Error(), "snapshot") {
				t.Errorf("web failed with %v; want the snapshot named", err)
			}
			if r := reason(t, res, "db"); r != "" {
				t.Errorf("db read whole because %q while web failed", r)
			}
		}, func(p *testPool) { p.clearSwitch(xapisim.SwitchSnapshotFail) }, 2},
		{"connections drop", func(p *testPool) { p.setSwitch(xapisim.SwitchNBDDropEvery + "=2") }, func(t *testing.T, res *xenbackup.Result) {
			reason(t, res, "web")
			reason(t, res, "db")
			var reconnects int64
			for _, v := range res.VMs {
				reconnects += v.Disks[0].Reconnects
			}
			if reconnects == 0 {
				t.Error("no reconnect although every second read of a connection dropped it")
			}
		}, func(p *testPool) { p.clearSwitch(xapisim.SwitchNBDDropEvery) }, 2},
		{"in-use race and slow changed-block lists", func(p *testPool) {
			p.setSwitch(xapisim.SwitchNBDInUseRace)
			p.setSwitch(xapisim.SwitchLCBSlow + "=3")
		}, func(t *testing.T, res *xenbackup.Result) {
			if r := reason(t, res, "web"); r != "" {
				t.Errorf("web read whole because %q", r)
			}
		}, nil, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPool(t, twoVMs)
			p.t = t
			if res := p.night(); len(res.Failed()) != 0 {
				t.Fatalf("night 1: %v", res.Failed()[0].Err)
			}
			c.before(p)
			p.write("web", 0, 2, 1)
			p.write("db", 0, 2, 2)
			res := p.night()
			c.check(t, res)
			for _, v := range res.VMs {
				if v.Err == nil {
					p.checkVM(res, v.Name, v.Disks[0].Read)
				}
			}
			p.checkClean(c.bases)
			if c.after != nil {
				c.after(p)
			}
			// Recovery: at most one more night of whole reads, then
			// changed blocks again, and the right disks every night.
			p.write("web", 0, 1, 3)
			res = p.night()
			p.checkVM(res, "web", readOf(t, res, "web"))
			p.write("web", 0, 1, 4)
			res = p.night()
			p.checkVM(res, "web", manifest.XenReadChanged)
			p.checkVM(res, "db", manifest.XenReadChanged)
			p.checkClean(2)
		})
	}
}

// A parent the caller calls unusable (its seed was cancelled) is never
// patched: that VM's next night reads its disks in full, saying why, and
// the night after goes back to changed blocks on the new parent.
func TestUnusableParentReadsInFull(t *testing.T) {
	p := newPool(t, twoVMs)
	res := p.night()
	if len(res.Failed()) != 0 {
		t.Fatalf("night 1: %v", res.Failed()[0].Err)
	}
	var web string
	for _, v := range res.VMs {
		if v.Name == "web" {
			web = v.SnapshotID
		}
	}
	const why = "the last snapshot's seed was cancelled"
	p.unusable = map[string]string{web: why}
	p.write("web", 0, 2, 1)
	p.write("db", 0, 2, 2)
	res = p.night()
	if r := reason(t, res, "web"); r != why {
		t.Errorf("web read because %q, want %q", r, why)
	}
	p.checkVM(res, "web", manifest.XenReadFull)
	p.checkVM(res, "db", manifest.XenReadChanged)
	p.write("web", 0, 1, 3)
	res = p.night()
	p.checkVM(res, "web", manifest.XenReadChanged)
}
