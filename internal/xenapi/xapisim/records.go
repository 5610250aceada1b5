package xapisim

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
)

// record is a XenAPI record as sent on the wire.
type record = map[string]any

// classes are the classes whose records the simulator serves, in the
// spelling of method names.
var classes = []string{"VM", "VBD", "VDI", "SR", "host", "pool", "network", "task"}

// refsOf lists a class's refs, sorted.
func (st *State) refsOf(class string) []string {
	var keys []string
	switch class {
	case "VM":
		keys = slices.Collect(maps.Keys(st.VMs))
	case "VBD":
		keys = slices.Collect(maps.Keys(st.VBDs))
	case "VDI":
		keys = slices.Collect(maps.Keys(st.VDIs))
	case "SR":
		keys = slices.Collect(maps.Keys(st.SRs))
	case "network":
		keys = slices.Collect(maps.Keys(st.Networks))
	case "task":
		keys = slices.Collect(maps.Keys(st.Tasks))
	case "host":
		keys = []string{st.Host.Ref}
	case "pool":
		keys = []string{st.Pool.Ref}
	}
	slices.Sort(keys)
	return keys
}

// recordOf is the wire record of ref, or nil when the class has no such
// object.
func (st *State) recordOf(class, ref string) record {
	switch class {
	case "VM":
		if st.VMs[ref] != nil {
			return st.vmRecord(ref)
		}
	case "VBD":
		if st.VBDs[ref] != nil {
			return st.vbdRecord(ref)
		}
	case "VDI":
		if st.VDIs[ref] != nil {
			return st.vdiRecord(ref)
		}
	case "SR":
		if st.SRs[ref] != nil {
			return st.srRecord(ref)
		}
	case "network":
		if n := st.Networks[ref]; n != nil {
			return record{"uuid": n.UUID, "name_label": n.NameLabel, "name_description": "", "purpose": st.purposes(n),
				"bridge": "xenbr0", "MTU": int64(1500), "other_config": map[string]string{}, "tags": []string{}}
		}
	case "task":
		if st.Tasks[ref] != nil {
			return st.taskRecord(ref)
		}
	case "host":
		if ref == st.Host.Ref {
			return st.hostRecord()
		}
	case "pool":
		if ref == st.Pool.Ref {
			return record{"uuid": st.Pool.UUID, "name_label": st.Pool.NameLabel, "name_description": "",
				"master": st.Host.Ref, "default_SR": st.Pool.DefaultSR, "other_config": map[string]string{},
				"tags": []string{}, "ha_enabled": false}
		}
	}
	return nil
}

func (st *State) purposes(n *Network) []string {
	if _, off := st.Switches[SwitchNBDDisabled]; off {
		return []string{}
	}
	return slices.Clone(n.Purpose)
}

func orNull(ref string, ok bool) string {
	if ok {
		return ref
	}
	return nullRef
}

func (st *State) vmRecord(ref string) record {
	vm := st.VMs[ref]
	var snaps []string
	for r, o := range st.VMs {
		if o.SnapshotOf == ref {
			snaps = append(snaps, r)
		}
	}
	slices.Sort(snaps)
	allowed := []string{"snapshot", "clone", "copy", "export"}
	if vm.IsSnapshot || vm.PowerState == "Halted" {
		allowed = append(allowed, "destroy")
	}
	snapInfo := map[string]string{}
	if vm.IsSnapshot {
		snapInfo["disk-snapshot-type"] = "crash_consistent"
	}
	running := vm.PowerState == "Running"
	domid := int64(-1)
	if running {
		domid = int64(len(vm.UUID) % 7)
	}
	_, parentOK := st.VMs[vm.SnapshotOf]
	mem, vcpus := cmp.Or(vm.Memory, 2<<30), cmp.Or(vm.VCPUs, 2)
	return record{"uuid": vm.UUID, "name_label": vm.NameLabel, "name_description": vm.NameDescription,
		"power_state": vm.PowerState, "is_a_template": vm.IsSnapshot, "is_default_template": false,
		"is_control_domain": vm.IsControlDomain, "is_a_snapshot": vm.IsSnapshot, "VBDs": orEmpty(st.vbdsOf(ref)),
		"VIFs": []string{}, "snapshots": orEmpty(snaps), "children": []string{},
		"snapshot_of": orNull(vm.SnapshotOf, parentOK), "parent": nullRef,
		"resident_on": orNull(st.Host.Ref, running), "snapshot_time": xapiTime(vm.SnapshotTime),
		"snapshot_info": snapInfo, "other_config": orEmptyMap(vm.OtherConfig),
		"blocked_operations": orEmptyMap(vm.BlockedOps), "tags": orEmpty(vm.Tags), "allowed_operations": allowed,
		"current_operations": map[string]string{}, "memory_static_max": mem,
		"memory_dynamic_max": mem, "memory_dynamic_min": mem, "memory_static_min": min(mem, int64(1<<30)),
		"memory_target": mem, "VCPUs_max": vcpus, "VCPUs_at_startup": vcpus, "domid": domid,
		"HVM_boot_policy": "BIOS order", "platform": map[string]string{}, "xenstore_data": map[string]string{}}
}

func (st *State) vbdRecord(ref string) record {
	b := st.VBDs[ref]
	device := ""
	if n, err := strconv.Atoi(b.UserDevice); err == nil && n < 26 {
		device = "xvd" + string(rune('a'+n))
	}
	bootable := b.UserDevice == "0"
	if b.Bootable != nil {
		bootable = *b.Bootable
	}
	return record{"uuid": b.UUID, "VM": b.VM, "VDI": b.VDI, "device": device, "userdevice": b.UserDevice,
		"bootable": bootable, "mode": b.Mode, "type": b.Type, "unpluggable": true,
		"empty": b.VDI == nullRef, "currently_attached": b.Attached, "other_config": map[string]string{},
		"storage_lock": false, "status_code": int64(0), "status_detail": "", "qos_algorithm_type": "",
		"qos_algorithm_params": map[string]string{}, "allowed_operations": []string{}, "current_operations": map[string]string{}}
}

func (st *State) vdiRecord(ref string) record {
	v := st.VDIs[ref]
	var snaps []string
	for r, o := range st.VDIs {
		if o.SnapshotOf == ref {
			snaps = append(snaps, r)
		}
	}
	slices.Sort(snaps)
	_, parentOK := st.VDIs[v.SnapshotOf]
	smConfig := map[string]string{}
	if len(v.Chain) > 0 {
		smConfig["image-format"] = "vhd"
	}
	rec := record{"uuid": v.UUID, "name_label": v.NameLabel, "name_description": "", "location": v.UUID,
		"SR": v.SR, "VBDs": orEmpty(st.vbdsOfVDI(ref)), "snapshots": orEmpty(snaps), "virtual_size": v.VirtualSize,
		"physical_utilisation": st.physUtil(v), "type": v.Type, "sharable": false, "read_only": v.ReadOnly,
		"managed": true, "missing": false, "other_config": orEmptyMap(v.OtherConfig), "sm_config": smConfig,
		"xenstore_data": map[string]string{}, "is_a_snapshot": v.IsSnapshot,
		"snapshot_of": orNull(v.SnapshotOf, parentOK), "snapshot_time": xapiTime(v.SnapshotTime),
		"on_boot": "persist", "tags": []string{}, "allowed_operations": []string{}, "current_operations": map[string]string{},
		"cbt_enabled": v.CBTEnabled, "storage_lock": false, "parent": nullRef, "crash_dumps": []string{}}
	if _, old := st.Switches[SwitchOldVersion]; old {
		delete(rec, "cbt_enabled")
	}
	return rec
}

// physUtil estimates a VDI's allocation from its chain length.
func (st *State) physUtil(v *VDI) int64 {
	if len(v.Chain) == 0 {
		return 0
	}
	return v.VirtualSize
}

func (st *State) srRecord(ref string) record {
	sr := st.SRs[ref]
	var vdis []string
	var alloc int64
	for r, v := range st.VDIs {
		if v.SR == ref {
			vdis = append(vdis, r)
			alloc += v.VirtualSize
		}
	}
	slices.Sort(vdis)
	return record{"uuid": sr.UUID, "name_label": sr.NameLabel, "name_description": "", "VDIs": orEmpty(vdis),
		"PBDs": []string{}, "virtual_allocation": alloc, "physical_utilisation": alloc, "physical_size": sr.PhysSize,
		"type": sr.Type, "content_type": sr.ContentType, "shared": false, "other_config": map[string]string{},
		"sm_config": map[string]string{}, "tags": []string{}}
}

func (st *State) hostRecord() record {
	h := st.Host
	return record{"uuid": h.UUID, "name_label": h.NameLabel, "name_description": "", "hostname": h.NameLabel,
		"address": h.Address, "API_version_major": int64(2), "API_version_minor": int64(21), "enabled": true,
		"software_version": map[string]string{"product_brand": "XenServer", "product_version": "8.4.0", "xapi": "24.19"},
		"other_config":     map[string]string{}, "resident_VMs": []string{st.controlDomain()}, "tags": []string{}}
}

func (st *State) taskRecord(ref string) record {
	t := st.Tasks[ref]
	progress := 1.0
	if t.Status == "pending" {
		progress = 0.5
	}
	return record{"uuid": t.UUID, "name_label": t.NameLabel, "name_description": "", "status": t.Status,
		"progress": progress, "result": t.Result, "error_info": orEmpty(t.ErrorInfo), "created": xapiTime(t.Created),
		"finished": xapiTime(t.Finished), "type": "<none/>", "resident_on": st.Host.Ref, "other_config": map[string]string{},
		"allowed_operations": []string{}, "current_operations": map[string]string{}, "subtask_of": nullRef, "subtasks": []string{}}
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
