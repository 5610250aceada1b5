package xapisim

import (
	"maps"
	"slices"
	"strconv"
)

// vdiTypes are the VDI types xapi knows.
var vdiTypes = []string{"system", "user", "ephemeral", "suspend", "crashdump", "ha_statefile", "metadata",
	"redo_log", "rrd", "pvs_cache", "cbt_metadata"}

// structField reads a field of a record parameter; a missing field or one
// of the wrong type is FIELD_TYPE_ERROR naming it.
func structField(rec map[string]any, name string, k kind) (any, error) {
	v, ok := rec[name]
	if !ok {
		return nil, apiErr(errFieldType, name)
	}
	if k == kMap {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, apiErr(errFieldType, name)
		}
		for _, x := range m {
			if _, ok := x.(string); !ok {
				return nil, apiErr(errFieldType, name)
			}
		}
		return m, nil
	}
	x, ok := convert(k, v)
	if !ok {
		return nil, apiErr(errFieldType, name)
	}
	return x, nil
}

// fields reads several fields at once.
func fields(rec map[string]any, spec map[string]kind) (map[string]any, error) {
	out := map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(spec)) {
		v, err := structField(rec, name, spec[name])
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

func stringMap(v any) map[string]string {
	out := map[string]string{}
	for k, x := range v.(map[string]any) {
		out[k] = x.(string)
	}
	return out
}

// vdiCreate is VDI.create(record): an empty VDI on a disk SR.
func vdiCreate(c *call) (any, error) {
	f, err := fields(c.rec(0), map[string]kind{"SR": kRef, "virtual_size": kInt, "type": kString,
		"sharable": kBool, "read_only": kBool, "other_config": kMap})
	if err != nil {
		return nil, err
	}
	sr, size, typ := f["SR"].(string), f["virtual_size"].(int64), f["type"].(string)
	switch {
	case c.st.SRs[sr] == nil:
		return nil, apiErr(errHandleInvalid, "SR", sr)
	case c.st.SRs[sr].ContentType == "iso":
		return nil, apiErr(errSROpNotSupported, sr)
	case !slices.Contains(vdiTypes, typ):
		return nil, apiErr(errFieldType, "type")
	case typ == "cbt_metadata":
		return nil, apiErr(errIncompatibleType, "", typ)
	case size <= 0 || size%512 != 0:
		return nil, apiErr(errInvalidValue, "virtual_size", strconv.FormatInt(size, 10))
	case size > c.st.srFree(sr):
		return nil, apiErr(errNoSpace, "", "There is insufficient space", "")
	}
	name, _ := c.rec(0)["name_label"].(string)
	layer, err := c.h.Sim.newLayer(size)
	if err != nil {
		return nil, err
	}
	u, ref := newRef()
	c.st.VDIs[ref] = &VDI{UUID: u, NameLabel: name, SR: sr, Type: typ, VirtualSize: size,
		ReadOnly: f["read_only"].(bool), OtherConfig: stringMap(f["other_config"]), Chain: []string{layer}}
	return ref, nil
}

// vbdCreate is VBD.create(record): an unplugged VBD.
func vbdCreate(c *call) (any, error) {
	f, err := fields(c.rec(0), map[string]kind{"VM": kRef, "VDI": kRef, "userdevice": kString, "bootable": kBool,
		"mode": kString, "type": kString, "empty": kBool, "other_config": kMap, "qos_algorithm_type": kString,
		"qos_algorithm_params": kMap})
	if err != nil {
		return nil, err
	}
	vm, vdi := f["VM"].(string), f["VDI"].(string)
	switch {
	case c.st.VMs[vm] == nil:
		return nil, apiErr(errHandleInvalid, "VM", vm)
	case vdi != nullRef && c.st.VDIs[vdi] == nil:
		return nil, apiErr(errHandleInvalid, "VDI", vdi)
	case f["mode"] != "RO" && f["mode"] != "RW":
		return nil, apiErr(errFieldType, "mode")
	case f["type"] != "Disk" && f["type"] != "CD" && f["type"] != "Floppy":
		return nil, apiErr(errFieldType, "type")
	}
	for _, b := range c.st.vbdsOf(vm) {
		if c.st.VBDs[b].UserDevice == f["userdevice"] {
			return nil, apiErr(errDeviceAttached, b)
		}
	}
	u, ref := newRef()
	bootable := f["bootable"].(bool)
	c.st.VBDs[ref] = &VBD{UUID: u, VM: vm, VDI: vdi, UserDevice: f["userdevice"].(string), Type: f["type"].(string),
		Mode: f["mode"].(string), Bootable: &bootable}
	return ref, nil
}

func vbdPlug(c *call) (any, error) {
	b := c.st.VBDs[c.str(0)]
	if b.Attached {
		return nil, apiErr(errDeviceAttached, c.str(0))
	}
	if c.st.VMs[b.VM].PowerState != "Running" {
		return nil, apiErr(errBadPowerState, b.VM, "running", "halted")
	}
	b.Attached = true
	return "", nil
}
