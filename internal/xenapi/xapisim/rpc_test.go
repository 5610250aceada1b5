package xapisim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestLogin(t *testing.T) {
	f := newFixture(t)
	data := f.fails(errAuthFailed, "session.login_with_password", "root", "wrong", "1.1", "x")
	if strings.Contains(strings.Join(data, " "), "wrong") {
		t.Fatalf("the error repeats the password: %v", data)
	}
	f.fails(errAuthFailed, "session.login_with_password", "admin", testPassword)
	s := f.ok("session.login_with_password", "root", testPassword).(string) // trailing defaults omitted
	if !validRef(s) {
		t.Fatalf("session ref %q", s)
	}
	f.ok("VM.get_all", s)
	if r := f.ok("session.logout", s); r != "" {
		t.Fatalf("logout returned %v, want \"\"", r)
	}
	if d := f.fails(errSessionInvalid, "VM.get_all", s); len(d) != 1 || d[0] != s {
		t.Fatalf("SESSION_INVALID data %v", d)
	}
}

func TestSessionExpiresWhenIdle(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	f.clock.Advance(23 * time.Hour)
	f.ok("VM.get_all", s) // activity keeps it alive
	f.clock.Advance(23 * time.Hour)
	f.ok("VM.get_all", s)
	f.clock.Advance(25 * time.Hour)
	f.fails(errSessionInvalid, "VM.get_all", s)
}

func TestStrictParameters(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	if d := f.fails(errParamCount, "VM.get_record", s); strings.Join(d, ",") != "VM.get_record,2,1" {
		t.Fatalf("count mismatch data %v", d)
	}
	f.fails(errParamCount, "VM.get_record", s, vm, "extra")
	f.fails(errParamCount, "VM.snapshot", s, vm)
	f.fails(errParamCount, "session.login_with_password", "root")
	if d := f.fails(errFieldType, "VM.get_record", s, 42); d[0] != "self" {
		t.Fatalf("FIELD_TYPE_ERROR data %v", d)
	}
	f.fails(errFieldType, "VM.snapshot", s, vm, "n", "not-a-list")
	f.fails(errFieldType, "VM.snapshot", s, vm, "n", []any{1})
	f.fails(errFieldType, "VM.get_all", 5)
	f.fails(errMethodUnknown, "VM.frobnicate", s)
	f.fails(errMethodUnknown, "vm.get_all", s) // classes are case-sensitive
	f.fails(errMethodUnknown, "Async.VM.get_all", s)
	f.fails(errSessionInvalid, "VM.get_all", "OpaqueRef:00000000-0000-4000-8000-000000000000")
	bogus := "OpaqueRef:11111111-1111-4111-8111-111111111111"
	if d := f.fails(errHandleInvalid, "VM.get_record", s, bogus); d[0] != "VM" || d[1] != bogus {
		t.Fatalf("HANDLE_INVALID data %v", d)
	}
	f.fails(errHandleInvalid, "VDI.get_record", s, vm) // a VM ref is no VDI
	if d := f.fails(errUUIDInvalid, "VM.get_by_uuid", s, "nope"); d[0] != "VM" || d[1] != "nope" {
		t.Fatalf("UUID_INVALID data %v", d)
	}
}

func TestMalformedRequestsGet500(t *testing.T) {
	f := newFixture(t)
	for _, body := range []string{
		``, `[]`, `{`, `{"jsonrpc":"2.0","method":"VM.get_all","params":[]}`,
		`{"jsonrpc":"2.0","method":"VM.get_all","params":[],"id":null}`,
		`{"jsonrpc":"2.0","method":"VM.get_all","params":[],"id":1.5}`,
		`{"jsonrpc":"2.0","method":"VM.get_all","params":[],"id":{}}`,
		`{"jsonrpc":"2.0","method":5,"params":[],"id":1}`,
		`{"jsonrpc":"2.0","method":"VM.get_all","params":{},"id":1}`,
		`{"jsonrpc":"3.0","method":"VM.get_all","params":[],"id":1}`,
		`{"jsonrpc":"2.0","method":"VM.get_all","params":[],"id":1} trailing`,
		`{"jsonrpc":"2.0","method":"VM.get_all","params":[NaN],"id":1}`,
	} {
		if code, out := f.post(body); code != http.StatusInternalServerError {
			t.Errorf("body %q: HTTP %d %s, want 500", body, code, out)
		}
	}
}

func TestVersion1Envelope(t *testing.T) {
	f := newFixture(t)
	code, out := f.post(`{"method":"VM.get_all","params":["OpaqueRef:bad"],"id":"a"}`)
	if code != http.StatusOK {
		t.Fatalf("HTTP %d", code)
	}
	var resp map[string]any
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatal(err)
	}
	if _, has := resp["jsonrpc"]; has || resp["result"] != nil || resp["id"] != "a" {
		t.Fatalf("v1 error envelope %s", out)
	}
	e, _ := resp["error"].([]any)
	if len(e) != 2 || e[0] != errSessionInvalid || e[1] != "OpaqueRef:bad" {
		t.Fatalf("v1 error %s", out)
	}
	body := `{"method":"session.login_with_password","params":["root","` + testPassword + `"],"id":3}`
	if _, out = f.post(body); !strings.Contains(string(out), `"error":null`) || !strings.Contains(string(out), `"result":"OpaqueRef:`) {
		t.Fatalf("v1 success %s", out)
	}
}

func TestRecords(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	all := f.ok("VM.get_all_records", s).(map[string]any)
	var dom0, web int
	for ref, r := range all {
		rec := r.(map[string]any)
		if !validRef(ref) {
			t.Errorf("ref %q", ref)
		}
		if _, has := rec["ref"]; has {
			t.Errorf("a record holds its ref")
		}
		if rec["is_control_domain"] == true {
			dom0++
		}
		if rec["name_label"] == "web" {
			web++
			if rec["power_state"] != "Running" || rec["is_a_template"] != false || rec["snapshot_time"] != "19700101T00:00:00Z" {
				t.Errorf("web record %v", rec)
			}
			if n := len(rec["VBDs"].([]any)); n != 3 {
				t.Errorf("web has %d VBDs, want 3", n)
			}
		}
	}
	if dom0 != 1 || web != 1 {
		t.Fatalf("%d control domains and %d web VMs", dom0, web)
	}
	if got := f.ok("VM.get_by_name_label", s, "web").([]any); len(got) != 1 {
		t.Fatalf("get_by_name_label %v", got)
	}
	vdi := f.disks(s, f.vmRef(s))[0]
	rec := f.ok("VDI.get_record", s, vdi).(map[string]any)
	if rec["virtual_size"] != float64(1<<20) || rec["type"] != "user" || rec["cbt_enabled"] != false {
		t.Fatalf("VDI record %v", rec)
	}
	if got := f.ok("VDI.get_virtual_size", s, vdi); got != float64(1<<20) {
		t.Fatalf("VDI.get_virtual_size %v", got)
	}
	for _, class := range classes {
		refs := f.ok(class+".get_all", s).([]any)
		if class != "task" && len(refs) == 0 {
			t.Errorf("%s.get_all is empty", class)
		}
	}
	nets := f.ok("network.get_all_records", s).(map[string]any)
	for _, n := range nets {
		if p := n.(map[string]any)["purpose"].([]any); len(p) != 1 || p[0] != "nbd" {
			t.Errorf("network purpose %v", p)
		}
	}
}

func TestVMEdits(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	vm := f.vmRef(s)
	f.ok("VM.add_tags", s, vm, "coffer")
	f.ok("VM.add_tags", s, vm, "coffer")
	f.ok("VM.set_name_description", s, vm, "front end")
	f.ok("VM.add_to_other_config", s, vm, "coffer.last", "n1")
	f.fails(errMapDuplicateKey, "VM.add_to_other_config", s, vm, "coffer.last", "n2")
	rec := f.ok("VM.get_record", s, vm).(map[string]any)
	if tags := rec["tags"].([]any); len(tags) != 1 || rec["name_description"] != "front end" ||
		rec["other_config"].(map[string]any)["coffer.last"] != "n1" {
		t.Fatalf("record after edits %v", rec)
	}
	f.ok("VM.remove_tags", s, vm, "coffer")
	f.ok("VM.remove_from_other_config", s, vm, "coffer.last")
	rec = f.ok("VM.get_record", s, vm).(map[string]any)
	if len(rec["tags"].([]any)) != 0 || len(rec["other_config"].(map[string]any)) != 0 {
		t.Fatalf("record after removals %v", rec)
	}
}

func TestFinishedTasksAreCollected(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	task := f.ok("Async.VM.snapshot", s, f.vmRef(s), "n1").(string)
	pending := f.ok("task.create", s, "upload", "").(string)
	f.clock.Advance(3800 * time.Second)
	f.ok("task.get_status", s, task)
	f.clock.Advance(200 * time.Second)
	f.fails(errHandleInvalid, "task.get_status", s, task)
	f.ok("task.get_status", s, pending) // pending tasks stay
}

func TestSessionsPerOriginatorAreCapped(t *testing.T) {
	f := newFixture(t)
	first := f.login()
	f.clock.Advance(time.Second)
	second := f.login()
	for range sessionsPerUser - 2 {
		f.clock.Advance(time.Second)
		f.login()
	}
	f.clock.Advance(time.Second)
	f.ok("VM.get_all", first) // 500 sessions, all valid; first is now the most recently used
	f.clock.Advance(time.Second)
	f.login()
	f.fails(errSessionInvalid, "VM.get_all", second) // the 501st logs out the least recently used
	f.ok("VM.get_all", first)
	other := f.ok("session.login_with_password", "root", testPassword, "1.1", "another-originator").(string)
	f.ok("VM.get_all", other)
}
