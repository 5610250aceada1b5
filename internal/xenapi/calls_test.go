package xenapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

const (
	vmRef   = Ref("OpaqueRef:6ef08bce-0bf0-30ff-804f-5f0ee4bbdd13")
	snapRef = Ref("OpaqueRef:1d6b1e2a-1111-4c3e-8a31-9f0b7c1e2d3f")
	vdiRef  = Ref("OpaqueRef:a7c3e0d2-2222-4c3e-8a31-9f0b7c1e2d3f")
)

func TestGetAllVMs(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	body, err := os.ReadFile("testdata/vm_get_all_records.json")
	if err != nil {
		t.Fatal(err)
	}
	f.result("VM.get_all_records", json.RawMessage(body))
	vms, err := s.GetAllVMs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(vms) != 3 {
		t.Fatalf("%d VMs", len(vms))
	}
	vm := vms[vmRef]
	if vm.UUID != "c5db1298-3e97-53bb-4f97-bd039ca8c217" || vm.NameLabel != "web-01" || vm.PowerState != "Running" ||
		vm.IsATemplate || vm.IsASnapshot || vm.IsControlDomain || len(vm.VBDs) != 2 || vm.VBDs[1] != "OpaqueRef:c92a38a8-87aa-2d04-622f-84a788d9f9ef" ||
		len(vm.Snapshots) != 1 || vm.Snapshots[0] != snapRef || !vm.SnapshotOf.IsNull() || vm.MemoryStaticMax != 8<<30 ||
		vm.VCPUsMax != 2 || vm.Domid != 50 || vm.OtherConfig["base_template_name"] != "Debian Bookworm 12" ||
		vm.BlockedOperations["migrate_send"] != "coffer backup running" || strings.Join(vm.Tags, ",") != "prod,coffer" ||
		!vm.SnapshotTime.Equal(time.Unix(0, 0)) || vm.ResidentOn != "OpaqueRef:4a0fde9c-5709-4f66-9968-64fb6162bd97" {
		t.Errorf("VM = %+v", vm)
	}
	snap := vms[snapRef]
	if !snap.IsASnapshot || !snap.IsATemplate || snap.SnapshotOf != vmRef || snap.MemoryStaticMax != 1<<63-1 ||
		!snap.SnapshotTime.Equal(time.Date(2024, 1, 15, 10, 20, 30, 0, time.UTC)) || snap.SnapshotInfo["disk-snapshot-type"] != "crash_consistent" {
		t.Errorf("snapshot = %+v", snap)
	}
	if dom0 := vms["OpaqueRef:7cdfad16-7e0e-411f-1b6c-4308fd33b164"]; !dom0.IsControlDomain || dom0.SnapshotTime.Hour() != 12 {
		t.Errorf("dom0 = %+v", dom0)
	}
}

func TestRecordShapeErrors(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	cases := []struct {
		name, record string
		errHas       []string
	}{
		{"enum as number", `{"power_state": 3}`, []string{"VM.get_record", "power_state", "want a string"}},
		{"int as float", `{"domid": 1.5}`, []string{"domid", "64-bit integer"}},
		{"int too big", `{"domid": 9223372036854775808}`, []string{"domid", "64-bit integer"}},
		{"bad ref", `{"snapshot_of": "vm-1"}`, []string{"snapshot_of", "reference"}},
		{"bad ref in set", `{"VBDs": ["OpaqueRef:a", 7]}`, []string{"VBDs", "item 1"}},
		{"map of ints", `{"other_config": {"a": 1}}`, []string{"other_config", `key "a"`}},
		{"bad time", `{"snapshot_time": "yesterday"}`, []string{"snapshot_time", "datetime"}},
		{"bool as string", `{"is_a_template": "true"}`, []string{"is_a_template", "boolean"}},
		{"not an object", `["x"]`, []string{"VM.get_record", "record was expected"}},
		{"null", `null`, []string{"record was expected"}},
		{"bad uuid", `{"uuid": "../../etc/passwd"}`, []string{"field uuid", "not a UUID"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.result("VM.get_record", json.RawMessage(c.record))
			_, err := s.GetVM(context.Background(), vmRef)
			for _, want := range c.errHas {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v, want %q", err, want)
				}
			}
		})
	}
	f.result("VM.get_all_records", json.RawMessage(`{"vm-1": {}}`))
	if _, err := s.GetAllVMs(context.Background()); err == nil || !strings.Contains(err.Error(), "not a reference") {
		t.Fatalf("err = %v", err)
	}
}

func TestTypedRecords(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	ctx := context.Background()
	f.result("VDI.get_record", json.RawMessage(`{"uuid":"3f1e0c52-1111-4c3e-8a31-9f0b7c1e2d3f","virtual_size":10737418240,
		"physical_utilisation":4096,"type":"user","cbt_enabled":true,"is_a_snapshot":true,"snapshot_of":"OpaqueRef:b1",
		"SR":"OpaqueRef:sr-1","VBDs":[],"snapshots":[],"missing":false,"read_only":false,"sm_config":{"vhd-parent":"p"},
		"snapshot_time":"20240115T10:20:30Z","on_boot":"persist"}`))
	vdi, err := s.GetVDI(ctx, vdiRef)
	if err != nil || vdi.VirtualSize != 10<<30 || vdi.Type != "user" || !vdi.CBTEnabled || !vdi.IsASnapshot ||
		vdi.SnapshotOf != "OpaqueRef:b1" || vdi.SR != "OpaqueRef:sr-1" || vdi.SmConfig["vhd-parent"] != "p" || vdi.VBDs == nil {
		t.Errorf("VDI = %+v, %v", vdi, err)
	}
	f.result("VBD.get_record", json.RawMessage(`{"VM":"OpaqueRef:vm","VDI":"OpaqueRef:NULL","device":"xvdd","userdevice":"3",
		"type":"CD","mode":"RO","empty":true,"currently_attached":false}`))
	vbd, err := s.GetVBD(ctx, "OpaqueRef:vbd")
	if err != nil || !vbd.VDI.IsNull() || vbd.Type != "CD" || vbd.Userdevice != "3" || !vbd.Empty {
		t.Errorf("VBD = %+v, %v", vbd, err)
	}
	f.result("host.get_record", json.RawMessage(`{"address":"10.0.0.5","hostname":"xen1","API_version_major":2,"API_version_minor":21,
		"software_version":{"product_version":"8.4.0"},"enabled":true}`))
	h, err := s.GetHost(ctx, "OpaqueRef:h")
	if err != nil || h.Address != "10.0.0.5" || h.APIVersionMajor != 2 || h.APIVersionMinor != 21 || h.SoftwareVersion["product_version"] != "8.4.0" {
		t.Errorf("host = %+v, %v", h, err)
	}
	f.result("SR.get_record", json.RawMessage(`{"type":"lvmoiscsi","shared":true,"physical_size":"1099511627776","content_type":"user"}`))
	sr, err := s.GetSR(ctx, "OpaqueRef:sr")
	if err != nil || sr.PhysicalSize != 1<<40 || !sr.Shared || sr.Type != "lvmoiscsi" {
		t.Errorf("SR = %+v, %v", sr, err)
	}
	f.result("network.get_all_records", json.RawMessage(`{"OpaqueRef:n1":{"purpose":["nbd"],"bridge":"xenbr0","MTU":1500},"OpaqueRef:n2":{"purpose":[]}}`))
	nets, err := s.GetAllNetworks(ctx)
	if err != nil || len(nets) != 2 || nets["OpaqueRef:n1"].Purpose[0] != "nbd" || nets["OpaqueRef:n1"].MTU != 1500 {
		t.Errorf("networks = %+v, %v", nets, err)
	}
	f.result("VDI.get_all_records", json.RawMessage(`{"OpaqueRef:v1":{"type":"cbt_metadata"}}`))
	f.result("VBD.get_all_records", json.RawMessage(`{}`))
	vdis, err1 := s.GetAllVDIs(ctx)
	vbds, err2 := s.GetAllVBDs(ctx)
	if err1 != nil || err2 != nil || vdis["OpaqueRef:v1"].Type != "cbt_metadata" || len(vbds) != 0 {
		t.Errorf("GetAllVDIs/VBDs = %v %v %v %v", vdis, err1, vbds, err2)
	}
}

func TestGetPool(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	f.result("pool.get_all", []string{"OpaqueRef:p1"})
	f.handle("pool.get_record", func(p []json.RawMessage) (any, []string) {
		if str(p[0]) != "OpaqueRef:p1" {
			return nil, []string{ErrHandleInvalid, "pool", str(p[0])}
		}
		return json.RawMessage(`{"name_label":"lab","master":"OpaqueRef:h1","default_SR":"OpaqueRef:NULL"}`), nil
	})
	ref, p, err := s.GetPool(context.Background())
	if err != nil || ref != "OpaqueRef:p1" || p.Master != "OpaqueRef:h1" || p.NameLabel != "lab" {
		t.Fatalf("GetPool = %v %+v %v", ref, p, err)
	}
	f.result("pool.get_all", []string{})
	if _, _, err := s.GetPool(context.Background()); err == nil || !strings.Contains(err.Error(), "0 pools") {
		t.Fatalf("err = %v", err)
	}
}

func TestLookups(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	ctx := context.Background()
	const uuid = "c5db1298-3e97-53bb-4f97-bd039ca8c217"
	f.handle("VM.get_by_uuid", func(p []json.RawMessage) (any, []string) {
		if str(p[0]) == uuid {
			return string(vmRef), nil
		}
		return nil, []string{ErrUUIDInvalid, "VM", str(p[0])}
	})
	if r, err := s.GetVMByUUID(ctx, uuid); err != nil || r != vmRef {
		t.Errorf("GetVMByUUID = %v, %v", r, err)
	}
	if _, err := s.GetVMByUUID(ctx, "0b0cafe0-1111-4c3e-8a31-9f0b7c1e2d3f"); !IsCode(err, ErrUUIDInvalid) {
		t.Errorf("unknown UUID: %v", err)
	}
	calls := f.called("VM.get_by_uuid")
	if _, err := s.GetVMByUUID(ctx, "web-01"); err == nil || f.called("VM.get_by_uuid") != calls {
		t.Errorf("a malformed UUID was sent: %v", err)
	}
	f.result("VDI.get_by_uuid", "not-a-ref")
	if _, err := s.GetVDIByUUID(ctx, uuid); err == nil || !strings.Contains(err.Error(), "reference was expected") {
		t.Errorf("GetVDIByUUID: %v", err)
	}
	f.result("VM.get_by_name_label", []string{string(vmRef), string(snapRef)})
	if refs, err := s.GetVMsByName(ctx, "web-01"); err != nil || len(refs) != 2 || refs[1] != snapRef {
		t.Errorf("GetVMsByName = %v, %v", refs, err)
	}
	f.result("VM.get_by_name_label", []string{"x"})
	if _, err := s.GetVMsByName(ctx, "web-01"); err == nil {
		t.Error("a bad reference in a set was accepted")
	}
}

func TestVoidCalls(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	ctx := context.Background()
	cases := []struct {
		method string
		call   func() error
		params []any
	}{
		{"VM.destroy", func() error { return s.DestroyVM(ctx, snapRef) }, []any{string(snapRef)}},
		{"VM.add_tags", func() error { return s.AddVMTag(ctx, vmRef, "coffer") }, []any{string(vmRef), "coffer"}},
		{"VM.set_name_description", func() error { return s.SetVMNameDescription(ctx, vmRef, "d") }, []any{string(vmRef), "d"}},
		{"VM.add_to_other_config", func() error { return s.AddVMOtherConfig(ctx, vmRef, "k", "v") }, []any{string(vmRef), "k", "v"}},
		{"VDI.enable_cbt", func() error { return s.EnableCBT(ctx, vdiRef) }, []any{string(vdiRef)}},
		{"VDI.disable_cbt", func() error { return s.DisableCBT(ctx, vdiRef) }, []any{string(vdiRef)}},
		{"VBD.unplug", func() error { return s.UnplugVBD(ctx, "OpaqueRef:vbd") }, []any{"OpaqueRef:vbd"}},
		{"VBD.destroy", func() error { return s.DestroyVBD(ctx, "OpaqueRef:vbd") }, []any{"OpaqueRef:vbd"}},
	}
	for _, c := range cases {
		f.result(c.method, "")
		if err := c.call(); err != nil {
			t.Errorf("%s: %v", c.method, err)
			continue
		}
		got := f.paramsOf(c.method)
		if len(got) != 1 || len(got[0]) != len(c.params)+1 || got[0][0] != string(testSession) {
			t.Errorf("%s params = %v", c.method, got)
			continue
		}
		for i, p := range c.params {
			if got[0][i+1] != p {
				t.Errorf("%s param %d = %v, want %v", c.method, i, got[0][i+1], p)
			}
		}
		f.result(c.method, 17)
		if err := c.call(); err == nil || !strings.Contains(err.Error(), "nothing was expected") {
			t.Errorf("%s with a result: %v", c.method, err)
		}
	}
	f.handle("VDI.enable_cbt", func([]json.RawMessage) (any, []string) {
		return nil, []string{ErrVDIIncompatibleType, string(vdiRef), "iso"}
	})
	if err := s.EnableCBT(ctx, vdiRef); !IsCode(err, ErrVDIIncompatibleType) {
		t.Errorf("EnableCBT on an ISO: %v", err)
	}
	before := f.called("VM.destroy")
	if err := s.DestroyVM(ctx, "vm-1"); err == nil || f.called("VM.destroy") != before {
		t.Errorf("a malformed reference was sent: %v", err)
	}
}

func TestSnapshotVM(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	taskScript(f, "VM.snapshot", []string{"success"}, "<value>"+string(snapRef)+"</value>", nil)
	got, err := s.SnapshotVM(context.Background(), vmRef, "coffer 2026-01-02")
	if err != nil || got != snapRef {
		t.Fatalf("SnapshotVM = %v, %v", got, err)
	}
	taskScript(f, "VM.snapshot", []string{"success"}, "<value>OpaqueRef:NULL</value>", nil)
	if _, err := s.SnapshotVM(context.Background(), vmRef, "x"); err == nil {
		t.Fatal("a NULL snapshot was accepted")
	}
	taskScript(f, "VM.snapshot", []string{"failure"}, "", []string{"SR_BACKEND_FAILURE_82", "", "timeout", ""})
	if _, err := s.SnapshotVM(context.Background(), vmRef, "x"); !IsCode(err, "SR_BACKEND_FAILURE_82") {
		t.Fatalf("err = %v", err)
	}
}

func TestBitmapLen(t *testing.T) {
	cases := map[int64]int64{0: 0, 1: 1, 65536: 1, 65537: 1, 8 * 65536: 1, 8*65536 + 1: 2, 10 << 30: 20480, 2040 << 30: 2040 << 30 / 65536 / 8}
	for size, want := range cases {
		if got := BitmapLen(size); got != want {
			t.Errorf("BitmapLen(%d) = %d, want %d", size, got, want)
		}
	}
}

func TestBlockChanged(t *testing.T) {
	bitmap := []byte{0x80, 0x01, 0x08}
	var changed []int64
	for i := int64(-1); i < 30; i++ {
		if BlockChanged(bitmap, i) {
			changed = append(changed, i)
		}
	}
	if fmt.Sprint(changed) != "[0 15 20]" {
		t.Fatalf("changed blocks = %v, want [0 15 20]", changed)
	}
}

func TestListChangedBlocks(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	size := int64(20*65536 + 5) // 21 blocks: 3 bytes
	bitmap := []byte{0x80, 0x01, 0x08}
	taskScript(f, "VDI.list_changed_blocks", []string{"pending", "success"}, "<value>"+base64.StdEncoding.EncodeToString(bitmap)+"</value>", nil)
	got, err := s.ListChangedBlocks(context.Background(), snapRef, vdiRef, size)
	if err != nil || string(got) != string(bitmap) {
		t.Fatalf("ListChangedBlocks = %x, %v", got, err)
	}
	if p := f.paramsOf("Async.VDI.list_changed_blocks")[0]; p[1] != string(snapRef) || p[2] != string(vdiRef) {
		t.Errorf("params = %v", p)
	}
	if _, err := s.ListChangedBlocks(context.Background(), snapRef, vdiRef, size+8*65536); err == nil ||
		!strings.Contains(err.Error(), "3 bytes") || !strings.Contains(err.Error(), "needs 4") {
		t.Errorf("wrong length: %v", err)
	}
	taskScript(f, "VDI.list_changed_blocks", []string{"success"}, "<value>!!notbase64</value>", nil)
	if _, err := s.ListChangedBlocks(context.Background(), snapRef, vdiRef, size); err == nil || !strings.Contains(err.Error(), "base64") {
		t.Errorf("bad base64: %v", err)
	}
	taskScript(f, "VDI.list_changed_blocks", []string{"failure"}, "", []string{ErrVDIInUse, string(vdiRef), "list_changed_blocks"})
	if _, err := s.ListChangedBlocks(context.Background(), snapRef, vdiRef, size); !IsCode(err, ErrVDIInUse) {
		t.Errorf("VDI_IN_USE: %v", err)
	}
}

func TestGetNBDInfo(t *testing.T) {
	f := newFakeXapi(t)
	s := f.login(t)
	export := "/3f1e0c52-1111-4c3e-8a31-9f0b7c1e2d3f?session_id=" + string(testSession)
	f.result("VDI.get_nbd_info", []map[string]any{{"exportname": export, "address": "10.0.0.5", "port": 10809,
		"cert": "-----BEGIN CERTIFICATE-----\n...", "subject": "xen1"}})
	infos, err := s.GetNBDInfo(context.Background(), vdiRef)
	if err != nil || len(infos) != 1 || infos[0].Port != 10809 || infos[0].Address != "10.0.0.5" || infos[0].ExportName != export || infos[0].Subject != "xen1" {
		t.Fatalf("GetNBDInfo = %+v, %v", infos, err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(verb, infos[0]); strings.Contains(out, string(testSession)) || !strings.Contains(out, "10.0.0.5:10809") {
			t.Errorf("Sprintf(%s) = %s", verb, out)
		}
	}
	f.result("VDI.get_nbd_info", []any{})
	if infos, err := s.GetNBDInfo(context.Background(), vdiRef); err != nil || len(infos) != 0 {
		t.Errorf("no NBD network: %v, %v", infos, err)
	}
	for _, bad := range []string{`[{"exportname":"/x","address":"10.0.0.5","port":0}]`, `[{"exportname":"/x","address":"a b","port":10809}]`,
		`[{"exportname":"","address":"h","port":10809}]`, `[{"exportname":"/x","address":"h","port":"10809x"}]`, `{"a":1}`} {
		f.result("VDI.get_nbd_info", json.RawMessage(bad))
		if _, err := s.GetNBDInfo(context.Background(), vdiRef); err == nil || !strings.Contains(err.Error(), "VDI.get_nbd_info") {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}

// FuzzDecodeRecord: any record bytes decode into a VM or fail with an
// error naming the method, never a panic.
func FuzzDecodeRecord(f *testing.F) {
	body, err := os.ReadFile("testdata/vm_get_all_records.json")
	if err != nil {
		f.Fatal(err)
	}
	var all map[string]json.RawMessage
	if err := unmarshal(body, &all); err != nil {
		f.Fatal(err)
	}
	for _, rec := range all {
		f.Add([]byte(rec))
	}
	f.Add([]byte(`{"VBDs":[1],"other_config":{"a":null},"snapshot_time":"2024-01-15T10:20:30+0100"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var vm VM
		if err := decodeRecord("VM.get_record", data, &vm); err != nil && !strings.Contains(err.Error(), "VM.get_record") {
			t.Fatalf("error without the method: %v", err)
		}
	})
}
