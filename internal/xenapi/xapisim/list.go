package xapisim

import (
	"cmp"
	"maps"
	"slices"
)

// Listing is the output of xapisim vm list --json (see the package doc).
type Listing struct {
	VMs             []ListedVM        `json:"vms"`
	VDIs            []ListedVDI       `json:"vdis"`
	Dom0Attachments []ListedVBD       `json:"dom0_attachments"`
	NBDConnections  int               `json:"nbd_connections"`
	Switches        map[string]string `json:"switches"`
}

// ListedVM is a VM or a snapshot.
type ListedVM struct {
	UUID            string            `json:"uuid"`
	Ref             string            `json:"ref"`
	NameLabel       string            `json:"name_label"`
	NameDescription string            `json:"name_description"`
	PowerState      string            `json:"power_state"`
	IsSnapshot      bool              `json:"is_a_snapshot"`
	SnapshotOf      string            `json:"snapshot_of"` // uuid, "" for none
	SnapshotTime    string            `json:"snapshot_time"`
	Tags            []string          `json:"tags"`
	OtherConfig     map[string]string `json:"other_config"`
	VBDs            []ListedVBD       `json:"vbds"`
}

// ListedVBD is a VBD of a VM, or a dom0 attachment.
type ListedVBD struct {
	UUID       string `json:"uuid"`
	UserDevice string `json:"userdevice"`
	Type       string `json:"type"`
	Mode       string `json:"mode"`
	Attached   bool   `json:"currently_attached"`
	VDI        string `json:"vdi"` // uuid, "" when empty
	NBD        bool   `json:"nbd"`
}

// ListedVDI is a VDI.
type ListedVDI struct {
	UUID        string `json:"uuid"`
	Ref         string `json:"ref"`
	NameLabel   string `json:"name_label"`
	SR          string `json:"sr"` // uuid
	Type        string `json:"type"`
	VirtualSize int64  `json:"virtual_size"`
	CBTEnabled  bool   `json:"cbt_enabled"`
	IsSnapshot  bool   `json:"is_a_snapshot"`
	SnapshotOf  string `json:"snapshot_of"` // uuid, "" for none
	Layers      int    `json:"layers"`
}

// List describes the VMs, snapshots, VDIs and dom0 attachments.
func (s *Sim) List() (*Listing, error) {
	var out *Listing
	err := s.View(func(st *State) error {
		out = st.listing()
		return nil
	})
	return out, err
}

func (st *State) listing() *Listing {
	out := &Listing{VMs: []ListedVM{}, VDIs: []ListedVDI{}, Dom0Attachments: []ListedVBD{},
		NBDConnections: st.NBDConns, Switches: maps.Clone(st.Switches)}
	for ref, vm := range st.VMs {
		if vm.IsControlDomain {
			out.Dom0Attachments = st.listVBDs(ref)
			continue
		}
		lv := ListedVM{UUID: vm.UUID, Ref: ref, NameLabel: vm.NameLabel, NameDescription: vm.NameDescription,
			PowerState: vm.PowerState, IsSnapshot: vm.IsSnapshot, Tags: vm.Tags, OtherConfig: vm.OtherConfig,
			VBDs: st.listVBDs(ref)}
		if p := st.VMs[vm.SnapshotOf]; p != nil {
			lv.SnapshotOf = p.UUID
		}
		if vm.IsSnapshot {
			lv.SnapshotTime = xapiTime(vm.SnapshotTime)
		}
		out.VMs = append(out.VMs, lv)
	}
	slices.SortFunc(out.VMs, func(a, b ListedVM) int {
		return cmp.Or(cmp.Compare(a.SnapshotTime, b.SnapshotTime), cmp.Compare(a.NameLabel, b.NameLabel), cmp.Compare(a.UUID, b.UUID))
	})
	for ref, v := range st.VDIs {
		lv := ListedVDI{UUID: v.UUID, Ref: ref, NameLabel: v.NameLabel, SR: st.SRs[v.SR].UUID, Type: v.Type,
			VirtualSize: v.VirtualSize, CBTEnabled: v.CBTEnabled, IsSnapshot: v.IsSnapshot, Layers: len(v.Chain)}
		if p := st.VDIs[v.SnapshotOf]; p != nil {
			lv.SnapshotOf = p.UUID
		}
		out.VDIs = append(out.VDIs, lv)
	}
	slices.SortFunc(out.VDIs, func(a, b ListedVDI) int {
		return cmp.Or(cmp.Compare(a.NameLabel, b.NameLabel), cmp.Compare(a.UUID, b.UUID))
	})
	return out
}

func (st *State) listVBDs(vmRef string) []ListedVBD {
	out := []ListedVBD{}
	for _, ref := range st.vbdsOf(vmRef) {
		b := st.VBDs[ref]
		lb := ListedVBD{UUID: b.UUID, UserDevice: b.UserDevice, Type: b.Type, Mode: b.Mode, Attached: b.Attached, NBD: b.NBD}
		if v := st.VDIs[b.VDI]; v != nil {
			lb.VDI = v.UUID
		}
		out = append(out, lb)
	}
	return out
}
