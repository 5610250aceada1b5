package xapisim

import (
	"strings"
	"testing"
)

func TestSwitchParsing(t *testing.T) {
	for _, bad := range []string{"nope", "no-cbt-licence=1", "nbd-drop-every", "nbd-drop-every=0", "nbd-drop-every=x",
		"lcb-slow=-1", "snapshot-fail", "snapshot-fail="} {
		if _, _, err := parseSwitch(bad); err == nil {
			t.Errorf("switch %q accepted", bad)
		}
	}
	for _, good := range []string{"no-cbt-licence", "nbd-drop-every=3", "snapshot-fail=all", "lcb-slow=2", "leak-attachments"} {
		if _, _, err := parseSwitch(good); err != nil {
			t.Errorf("switch %q: %v", good, err)
		}
	}
}

func TestSwitchNoCBTLicence(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	disk := f.disks(s, f.vmRef(s))[0]
	if err := f.sim.SetSwitch(SwitchNoCBTLicence); err != nil {
		t.Fatal(err)
	}
	f.fails(errLicence, "VDI.enable_cbt", s, disk)
	if err := f.sim.ClearSwitch(SwitchNoCBTLicence); err != nil {
		t.Fatal(err)
	}
	f.ok("VDI.enable_cbt", s, disk)
}

func TestSwitchOldVersion(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	disk := f.disks(s, f.vmRef(s))[0]
	if err := f.sim.SetSwitch(SwitchOldVersion); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"VDI.enable_cbt", "VDI.disable_cbt", "VDI.get_nbd_info", "VDI.data_destroy", "VDI.get_cbt_enabled"} {
		f.fails(errMethodUnknown, m, s, disk)
	}
	f.fails(errMethodUnknown, "VDI.list_changed_blocks", s, disk, disk)
	f.fails(errMethodUnknown, "Async.VDI.list_changed_blocks", s, disk, disk)
	if _, has := f.ok("VDI.get_record", s, disk).(map[string]any)["cbt_enabled"]; has {
		t.Fatal("an old version's VDI record has cbt_enabled")
	}
}

func TestSwitchNBDDisabled(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	disk := f.disks(s, f.vmRef(s))[0]
	info := f.ok("VDI.get_nbd_info", s, disk).([]any)
	if len(info) != 1 {
		t.Fatalf("get_nbd_info %v", info)
	}
	e := info[0].(map[string]any)
	vdiUUID := f.ok("VDI.get_uuid", s, disk).(string)
	if e["exportname"] != "/"+vdiUUID+"?session_id="+s || e["port"] != float64(10809) || e["subject"] != "localhost" {
		t.Fatalf("get_nbd_info entry %v", e)
	}
	if err := f.sim.SetSwitch(SwitchNBDDisabled); err != nil {
		t.Fatal(err)
	}
	if info := f.ok("VDI.get_nbd_info", s, disk).([]any); len(info) != 0 {
		t.Fatalf("get_nbd_info with NBD disabled: %v", info)
	}
}

func TestSwitchSnapshotFail(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	if err := f.sim.SetSwitch(SwitchSnapshotFail + "=web"); err != nil {
		t.Fatal(err)
	}
	f.fails(errSnapshotBackend82, "VM.snapshot", s, vm, "n1")
	task := f.ok("Async.VM.snapshot", s, vm, "n1").(string)
	if st := f.ok("task.get_status", s, task); st != "failure" {
		t.Fatalf("task status %v", st)
	}
	if info := f.ok("task.get_error_info", s, task).([]any); len(info) == 0 || info[0] != errSnapshotBackend82 {
		t.Fatalf("error_info %v", info)
	}
	if err := f.sim.SetSwitch(SwitchSnapshotFail + "=other"); err != nil {
		t.Fatal(err)
	}
	f.ok("VM.snapshot", s, vm, "n1")
}

func TestSwitchLCBSlow(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	disk := f.disks(s, vm)[0]
	f.ok("VDI.enable_cbt", s, disk)
	s1 := f.disks(s, f.snapshot(s, vm, "n1"))[0]
	s2 := f.disks(s, f.snapshot(s, vm, "n2"))[0]
	if err := f.sim.SetSwitch(SwitchLCBSlow + "=2"); err != nil {
		t.Fatal(err)
	}
	task := f.ok("Async.VDI.list_changed_blocks", s, s1, s2).(string)
	for i := range 2 {
		if st := f.ok("task.get_status", s, task); st != "pending" {
			t.Fatalf("poll %d: %v", i, st)
		}
		if r := f.ok("task.get_result", s, task); r != "" {
			t.Fatalf("a pending task has result %v", r)
		}
	}
	if st := f.ok("task.get_status", s, task); st != "success" {
		t.Fatalf("third poll: %v", st)
	}
	if r := f.ok("task.get_result", s, task).(string); !strings.HasPrefix(r, "<value>") {
		t.Fatalf("result %q", r)
	}
	// A pending task can be cancelled.
	task = f.ok("Async.VDI.list_changed_blocks", s, s1, s2).(string)
	f.ok("task.cancel", s, task)
	if st := f.ok("task.get_status", s, task); st != "cancelled" {
		t.Fatalf("after cancel: %v", st)
	}
	f.ok("task.destroy", s, task)
	f.fails(errHandleInvalid, "task.get_status", s, task)
}

func TestAsyncFailureIsATaskFailure(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	bogus := "OpaqueRef:11111111-1111-4111-8111-111111111111"
	task := f.ok("Async.VDI.destroy", s, bogus).(string)
	if st := f.ok("task.get_status", s, task); st != "failure" {
		t.Fatalf("status %v", st)
	}
	info := f.ok("task.get_error_info", s, task).([]any)
	if len(info) != 3 || info[0] != errHandleInvalid || info[2] != bogus {
		t.Fatalf("error_info %v", info)
	}
	f.fails(errParamCount, "Async.VDI.destroy", s) // counted before any task exists
	rec := f.ok("task.get_record", s, task).(map[string]any)
	if rec["status"] != "failure" || rec["finished"] == "19700101T00:00:00Z" {
		t.Fatalf("task record %v", rec)
	}
}
