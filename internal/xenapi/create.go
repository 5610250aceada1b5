package xenapi

import (
	"context"
	"fmt"
)

// VDISpec is what VDI.create needs: the fields xapi requires (SR,
// virtual_size, type, sharable, read_only, other_config) and a name.
type VDISpec struct {
	NameLabel       string
	NameDescription string
	SR              Ref
	VirtualSize     int64
	Type            string // VDITypeUser when empty
	Sharable        bool
	ReadOnly        bool
	OtherConfig     map[string]string
}

// CreateVDI creates an empty VDI (Async.VDI.create) and returns it.
func (s *Session) CreateVDI(ctx context.Context, spec VDISpec) (Ref, error) {
	const method = "VDI.create"
	if err := checkRef(method, spec.SR); err != nil {
		return "", err
	}
	if spec.VirtualSize <= 0 || spec.VirtualSize%512 != 0 {
		return "", fmt.Errorf("xenapi: %s %q: the size %d is not a positive multiple of 512", method, spec.NameLabel, spec.VirtualSize)
	}
	if spec.Type == "" {
		spec.Type = VDITypeUser
	}
	rec := map[string]any{"name_label": spec.NameLabel, "name_description": spec.NameDescription,
		"SR": string(spec.SR), "virtual_size": spec.VirtualSize, "type": spec.Type, "sharable": spec.Sharable,
		"read_only": spec.ReadOnly, "other_config": orEmptyMap(spec.OtherConfig), "xenstore_data": map[string]string{},
		"sm_config": map[string]string{}, "tags": []string{}}
	return s.asyncRef(ctx, method, rec)
}

// VBDSpec is what VBD.create needs (xapi requires every field but
// qos_algorithm_type and qos_algorithm_params, sent empty).
type VBDSpec struct {
	VM         Ref
	VDI        Ref // NullRef for an empty drive
	Userdevice string
	Bootable   bool
	Mode       string // RO or RW
	Type       string // Disk, CD or Floppy
	Empty      bool
}

// CreateVBD creates an unplugged VBD (Async.VBD.create) and returns it.
func (s *Session) CreateVBD(ctx context.Context, spec VBDSpec) (Ref, error) {
	const method = "VBD.create"
	for _, r := range []Ref{spec.VM, spec.VDI} {
		if err := checkRef(method, r); err != nil {
			return "", err
		}
	}
	rec := map[string]any{"VM": string(spec.VM), "VDI": string(spec.VDI), "userdevice": spec.Userdevice,
		"bootable": spec.Bootable, "mode": spec.Mode, "type": spec.Type, "empty": spec.Empty,
		"other_config": map[string]string{}, "qos_algorithm_type": "", "qos_algorithm_params": map[string]string{}}
	return s.asyncRef(ctx, method, rec)
}

// asyncRef runs an Async call whose result is a new object's reference.
func (s *Session) asyncRef(ctx context.Context, method string, params ...any) (Ref, error) {
	res, err := s.Async(ctx, method, params...)
	if err != nil {
		return "", err
	}
	if r := Ref(res); validRef(r) && !r.IsNull() {
		return r, nil
	}
	return "", fmt.Errorf("xenapi: %s: the task's result is not a reference", method)
}

// GetAllSRs returns every SR record.
func (s *Session) GetAllSRs(ctx context.Context) (map[Ref]SR, error) {
	return getAllRecords[SR](ctx, s, "SR")
}

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
