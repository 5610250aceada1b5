package xapisim

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// snapshot takes an Async.VM.snapshot and returns the snapshot VM's ref.
func (f *fixture) snapshot(s, vm, name string) string {
	f.t.Helper()
	task := f.ok("Async.VM.snapshot", s, vm, name).(string)
	if st := f.ok("task.get_status", s, task); st != "success" {
		f.t.Fatalf("snapshot task %v: %v", st, f.ok("task.get_error_info", s, task))
	}
	res := f.ok("task.get_result", s, task).(string)
	ref, ok := strings.CutSuffix(strings.TrimPrefix(res, "<value>"), "</value>")
	if !ok || !validRef(ref) {
		f.t.Fatalf("task result %q", res)
	}
	f.ok("task.destroy", s, task)
	return ref
}

func TestCBTChain(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	disk := f.disks(s, vm)[0]
	f.ok("VDI.enable_cbt", s, disk)
	f.ok("VDI.enable_cbt", s, disk) // idempotent
	d0 := DiskRef{VM: "web", N: 0}
	if err := f.sim.WriteBlocks(d0, []int64{1, 2}, 1); err != nil {
		t.Fatal(err)
	}
	s1 := f.disks(s, f.snapshot(s, vm, "night 1"))[0]
	rec := f.ok("VDI.get_record", s, s1).(map[string]any)
	if rec["is_a_snapshot"] != true || rec["cbt_enabled"] != true || rec["snapshot_of"] != disk {
		t.Fatalf("snapshot VDI %v", rec)
	}
	f.fails(errVDIInUse, "VDI.list_changed_blocks", s, s1, disk) // the live disk is attached
	want := []int64{0, 7, 15}
	if err := f.sim.WriteBlocks(d0, want, 2); err != nil {
		t.Fatal(err)
	}
	s2 := f.disks(s, f.snapshot(s, vm, "night 2"))[0]
	got := setBits(t, f.ok("VDI.list_changed_blocks", s, s1, s2))
	if !sameBlocks(got, want) {
		t.Fatalf("changed blocks %v, want %v", got, want)
	}
	raw := f.ok("VDI.list_changed_blocks", s, s1, s2).(string)
	if n := len(raw); n != 4 { // 16 blocks -> 2 bytes -> 4 base64 characters
		t.Fatalf("bitmap %q has %d characters", raw, n)
	}
	f.ok("VDI.data_destroy", s, s1)
	f.ok("VDI.data_destroy", s, s1) // idempotent
	if ty := f.ok("VDI.get_type", s, s1); ty != "cbt_metadata" {
		t.Fatalf("type after data_destroy %v", ty)
	}
	if !sameBlocks(setBits(t, f.ok("VDI.list_changed_blocks", s, s1, s2)), want) {
		t.Fatal("list_changed_blocks from cbt_metadata differs")
	}
	assertLCBFails(f, s, s2, s1, "unrelated")
	assertLCBFails(f, s, s2, s2, "same")
}

func assertLCBFails(f *fixture, s, from, to, why string) {
	f.t.Helper()
	_, code, data := f.rpc("VDI.list_changed_blocks", s, from, to)
	if code != errCBTBackend460 || len(data) != 3 || !strings.Contains(data[1], why) {
		f.t.Fatalf("list_changed_blocks: %s %v, want SR_BACKEND_FAILURE_460 (%s)", code, data, why)
	}
}

func TestCBTChainBreaks(t *testing.T) {
	for _, brk := range []string{"disable", "migrate"} {
		t.Run(brk, func(t *testing.T) {
			f := newFixture(t)
			s := f.login()
			vm := f.vmRef(s)
			disk := f.disks(s, vm)[0]
			f.ok("VDI.enable_cbt", s, disk)
			s1 := f.disks(s, f.snapshot(s, vm, "n1"))[0]
			if brk == "disable" {
				f.ok("VDI.disable_cbt", s, disk)
				f.ok("VDI.enable_cbt", s, disk)
			} else {
				newUUID, err := f.sim.Migrate(DiskRef{VM: f.vm, N: 0})
				if err != nil {
					t.Fatal(err)
				}
				f.fails(errHandleInvalid, "VDI.get_record", s, disk)
				if got := f.ok("VDI.get_by_uuid", s, newUUID); got == disk {
					t.Fatal("the migrated VDI kept its ref")
				}
			}
			s2 := f.disks(s, f.snapshot(s, vm, "n2"))[0]
			_, code, data := f.rpc("VDI.list_changed_blocks", s, s1, s2)
			if code != errCBTBackend460 || !strings.Contains(data[1], "unrelated") {
				t.Fatalf("after %s: %s %v", brk, code, data)
			}
		})
	}
}

func TestForbiddenOperations(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	disks := f.disks(s, vm)
	snap := f.snapshot(s, vm, "n1")
	snapDisk := f.disks(s, snap)[0]
	if d := f.fails(errBadPowerState, "VM.destroy", s, vm); strings.Join(d[1:], ",") != "halted,running" {
		t.Fatalf("VM_BAD_POWER_STATE data %v", d)
	}
	f.fails(errNotAllowed, "VDI.enable_cbt", s, snapDisk)
	f.fails(errNotAllowed, "VDI.data_destroy", s, disks[0])
	f.fails(errNoCBTMetadata, "VDI.data_destroy", s, snapDisk)
	f.fails(errVDIInUse, "VDI.destroy", s, disks[0])
	iso := isoOf(f, s, vm)
	f.fails(errIncompatibleType, "VDI.enable_cbt", s, iso)
	// Destroying the snapshot VM keeps its VDIs; the CD VDI is never a snapshot.
	f.ok("VM.destroy", s, snap)
	f.fails(errHandleInvalid, "VM.get_record", s, snap)
	f.ok("VDI.get_record", s, snapDisk)
	f.ok("VDI.destroy", s, snapDisk)
	f.fails(errHandleInvalid, "VDI.get_record", s, snapDisk)
	f.fails(errSROpNotSupported, "VDI.destroy", s, iso)
}

func isoOf(f *fixture, s, vm string) string {
	rec := f.ok("VM.get_record", s, vm).(map[string]any)
	for _, b := range rec["VBDs"].([]any) {
		vbd := f.ok("VBD.get_record", s, b).(map[string]any)
		if vbd["type"] == "CD" {
			return vbd["VDI"].(string)
		}
	}
	f.t.Fatal("no CD")
	return ""
}

func TestSnapshotKeepsCDAndTags(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	f.ok("VM.add_tags", s, vm, "gold")
	snap := f.ok("VM.snapshot", s, vm, "n1", []any{}).(string)
	rec := f.ok("VM.get_record", s, snap).(map[string]any)
	if rec["is_a_snapshot"] != true || rec["is_a_template"] != true || rec["power_state"] != "Halted" ||
		rec["snapshot_of"] != vm || rec["snapshot_info"].(map[string]any)["disk-snapshot-type"] == nil {
		t.Fatalf("snapshot record %v", rec)
	}
	if tags := rec["tags"].([]any); len(tags) != 1 || tags[0] != "gold" {
		t.Fatalf("snapshot tags %v", tags)
	}
	if isoOf(f, s, snap) != isoOf(f, s, vm) {
		t.Fatal("the snapshot's CD points at another VDI")
	}
	live := f.ok("VM.get_record", s, vm).(map[string]any)
	if snaps := live["snapshots"].([]any); len(snaps) != 1 || snaps[0] != snap {
		t.Fatalf("VM.snapshots %v", snaps)
	}
	// ignore_vdis leaves a disk out.
	disks := f.disks(s, vm)
	snap2 := f.ok("VM.snapshot", s, vm, "n2", []any{disks[1]}).(string)
	if n := len(f.disks(s, snap2)); n != 1 {
		t.Fatalf("snapshot with ignore_vdis has %d disks", n)
	}
}

func TestSnapshotExportIsTheDiskAsItWas(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	d0 := DiskRef{VM: "web", N: 0}
	if err := f.sim.WriteBlocks(d0, []int64{0, 3}, 1); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	before := filepath.Join(dir, "before.img")
	if err := f.sim.Export(d0, before); err != nil {
		t.Fatal(err)
	}
	snap := f.disks(s, f.snapshot(s, vm, "n1"))[0]
	if err := f.sim.WriteBlocks(d0, []int64{3, 9}, 2); err != nil {
		t.Fatal(err)
	}
	snapFile := filepath.Join(dir, "snap.img")
	if err := f.sim.exportVDI(snap, snapFile); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, before), readFile(t, snapFile)) {
		t.Fatal("the snapshot does not read as the disk did when it was taken")
	}
	after := filepath.Join(dir, "after.img")
	if err := f.sim.Export(d0, after); err != nil {
		t.Fatal(err)
	}
	a, b := readFile(t, after), readFile(t, before)
	if len(a) != 1<<20 || bytes.Equal(a[3*BlockSize:4*BlockSize], b[3*BlockSize:4*BlockSize]) ||
		!bytes.Equal(a[0:BlockSize], b[0:BlockSize]) || allZero(a[9*BlockSize:10*BlockSize]) {
		t.Fatal("the live disk after the writes is wrong")
	}
}

func TestBlockedOperations(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	f.ok("VM.add_to_blocked_operations", s, vm, "snapshot", "coffer night")
	if d := f.fails(errOpBlocked, "VM.snapshot", s, vm, "n1"); d[0] != vm || d[1] != "coffer night" {
		t.Fatalf("OPERATION_BLOCKED data %v", d)
	}
	f.ok("VM.remove_from_blocked_operations", s, vm, "snapshot")
	f.ok("VM.snapshot", s, vm, "n1")
}

func TestHaltedVM(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	u, err := f.sim.CreateVMState("cold", []int64{1 << 20}, true, true)
	if err != nil {
		t.Fatal(err)
	}
	vm := f.ok("VM.get_by_uuid", s, u).(string)
	disk := f.disks(s, vm)[0]
	f.ok("VDI.enable_cbt", s, disk)
	snap := f.disks(s, f.snapshot(s, vm, "n1"))[0]
	if err := f.sim.WriteBlocks(DiskRef{VM: "cold", N: 0}, []int64{4}, 1); err != nil {
		t.Fatal(err)
	}
	// The live disk is not attached: it may be the newer side.
	if got := setBits(t, f.ok("VDI.list_changed_blocks", s, snap, disk)); !sameBlocks(got, []int64{4}) {
		t.Fatalf("changed blocks up to the live disk: %v", got)
	}
	if r := f.ok("VM.get_record", s, vm).(map[string]any); r["power_state"] != "Halted" || r["resident_on"] != nullRef {
		t.Fatalf("halted VM record %v", r)
	}
	f.ok("VM.destroy", s, vm)
	f.ok("VDI.get_record", s, disk) // VM.destroy keeps the VDIs
	f.ok("VDI.destroy", s, disk)
}
