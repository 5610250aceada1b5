package xapisim

import (
	"bytes"
	"net/http"
	"testing"
)

func vdiArgs(sr string) map[string]any {
	return map[string]any{"SR": sr, "virtual_size": 2 << 20, "type": "user", "sharable": false, "read_only": false,
		"other_config": map[string]any{"coffer.restore": "1"}, "name_label": "restored"}
}

func TestVDIAndVBDCreate(t *testing.T) {
	f := newFixture(t)
	s := f.login()
	sr := f.ok("pool.get_default_SR", s, f.ok("pool.get_all", s).([]any)[0]).(string)
	vdi := f.ok("VDI.create", s, vdiArgs(sr)).(string)
	rec := f.ok("VDI.get_record", s, vdi).(map[string]any)
	if rec["virtual_size"] != float64(2<<20) || rec["name_label"] != "restored" || rec["other_config"].(map[string]any)["coffer.restore"] != "1" {
		t.Fatalf("created VDI %v", rec)
	}
	for field, bad := range map[string]any{"virtual_size": "big", "type": "floppy", "sharable": "no", "other_config": map[string]any{"k": 1}} {
		a := vdiArgs(sr)
		a[field] = bad
		if d := f.fails(errFieldType, "VDI.create", s, a); d[0] != field {
			t.Errorf("%s: FIELD_TYPE_ERROR %v", field, d)
		}
	}
	a := vdiArgs(sr)
	delete(a, "SR")
	f.fails(errFieldType, "VDI.create", s, a)
	a = vdiArgs(sr)
	a["virtual_size"] = 1000
	f.fails(errInvalidValue, "VDI.create", s, a)
	a = vdiArgs(sr)
	a["type"] = "cbt_metadata"
	f.fails(errIncompatibleType, "VDI.create", s, a)
	f.fails(errHandleInvalid, "VDI.create", s, vdiArgs("OpaqueRef:11111111-1111-4111-8111-111111111111"))
	f.fails(errFieldType, "VDI.create", s, "not a record")

	vm := f.vmRef(s)
	vbdArgs := map[string]any{"VM": vm, "VDI": vdi, "userdevice": "5", "bootable": false, "mode": "RW", "type": "Disk",
		"empty": false, "other_config": map[string]any{}, "qos_algorithm_type": "", "qos_algorithm_params": map[string]any{}}
	vbd := f.ok("VBD.create", s, vbdArgs).(string)
	if f.ok("VBD.get_currently_attached", s, vbd) != false {
		t.Fatal("a new VBD is attached")
	}
	f.fails(errDeviceAttached, "VBD.create", s, vbdArgs) // userdevice 5 is taken
	f.ok("VBD.plug", s, vbd)
	f.fails(errDeviceAttached, "VBD.plug", s, vbd)
	f.fails(errVDIInUse, "VDI.destroy", s, vdi)
	f.ok("VBD.unplug", s, vbd)
	f.ok("VDI.destroy", s, vdi) // its unplugged VBD goes with it
	f.fails(errHandleInvalid, "VBD.get_record", s, vbd)
}

func TestImportIntoNewVDI(t *testing.T) {
	f := newServedFixture(t)
	s := f.login()
	sr := f.ok("pool.get_default_SR", s, f.ok("pool.get_all", s).([]any)[0]).(string)
	task := f.ok("task.create", s, "restore", "").(string)
	body := bytes.Repeat([]byte{7}, 3*BlockSize)
	req, _ := http.NewRequest(http.MethodPut, f.url+"/import_raw_vdi?sr_id="+sr+"&format=raw&session_id="+s+"&task_id="+task, bytes.NewReader(body))
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || f.ok("task.get_status", s, task) != "success" {
		t.Fatalf("HTTP %d, task %v", resp.StatusCode, f.ok("task.get_record", s, task))
	}
	res := f.ok("task.get_result", s, task).(string)
	vdi := res[len("<value>") : len(res)-len("</value>")]
	if size := f.ok("VDI.get_virtual_size", s, vdi); size != float64(len(body)) {
		t.Fatalf("new VDI size %v", size)
	}
	out := f.get("/export_raw_vdi?vdi=" + vdi + "&session_id=" + s)
	var got bytes.Buffer
	if _, err := got.ReadFrom(out.Body); err != nil || !bytes.Equal(got.Bytes(), body) {
		t.Fatalf("the new VDI reads back %d bytes, %v", got.Len(), err)
	}
}
