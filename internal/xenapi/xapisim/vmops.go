package xapisim

import (
	"encoding/base64"
	"maps"
	"slices"
	"strings"
)

// snapshotVM is VM.snapshot: each disk VDI's top layer is frozen into a new
// snapshot VDI and the disk gets a new empty top layer; CD VBDs point at
// the same VDI.
func (s *Sim) snapshotVM(st *State, vmRef, name string, ignore []string) (string, error) {
	vm := st.VMs[vmRef]
	if vm.IsSnapshot || vm.IsControlDomain {
		return "", apiErr(errNotAllowed, "VM.snapshot is not allowed on a snapshot or the control domain: "+vmRef)
	}
	if v, ok := st.Switches[SwitchSnapshotFail]; ok && (v == "all" || v == vm.UUID || v == vm.NameLabel) {
		return "", apiErr(errSnapshotBackend82, "", "Failed to snapshot VDI [opterr=xapisim switch snapshot-fail]", "")
	}
	if reason, ok := vm.BlockedOps["snapshot"]; ok {
		return "", apiErr(errOpBlocked, vmRef, reason)
	}
	now := s.now()
	su, sref := newRef()
	st.VMs[sref] = &VM{UUID: su, NameLabel: name, NameDescription: vm.NameDescription, PowerState: "Halted",
		IsSnapshot: true, SnapshotOf: vmRef, SnapshotTime: now, Tags: slices.Clone(vm.Tags),
		OtherConfig: maps.Clone(vm.OtherConfig), BlockedOps: map[string]string{}}
	for _, bref := range st.vbdsOf(vmRef) {
		b := st.VBDs[bref]
		vdi := b.VDI
		if b.Type == "Disk" && vdi != nullRef && !slices.Contains(ignore, vdi) {
			var err error
			if vdi, err = s.snapshotVDI(st, vdi); err != nil {
				return "", err
			}
		} else if b.Type == "Disk" {
			continue
		}
		bu, nb := newRef()
		st.VBDs[nb] = &VBD{UUID: bu, VM: sref, VDI: vdi, UserDevice: b.UserDevice, Type: b.Type, Mode: b.Mode}
	}
	return sref, nil
}

// snapshotVDI freezes a disk's chain into a new snapshot VDI.
func (s *Sim) snapshotVDI(st *State, vdiRef string) (string, error) {
	v := st.VDIs[vdiRef]
	layer, err := s.newLayer(v.VirtualSize)
	if err != nil {
		return "", err
	}
	u, ref := newRef()
	snap := *v
	snap.UUID, snap.IsSnapshot, snap.SnapshotOf, snap.SnapshotTime = u, true, vdiRef, s.now()
	snap.OtherConfig = maps.Clone(v.OtherConfig)
	snap.Chain = slices.Clone(v.Chain)
	st.VDIs[ref] = &snap
	v.Chain = append([]string{layer}, v.Chain...)
	if v.CBTEnabled && v.CBTChain != "" {
		v.CBTEpoch++
	}
	return ref, nil
}

// destroyVM is VM.destroy: snapshots and halted VMs only; it removes the
// VM and its VBDs, never the VDIs.
func (st *State) destroyVM(vmRef string) error {
	vm := st.VMs[vmRef]
	if vm.IsControlDomain {
		return apiErr(errNotAllowed, "the control domain cannot be destroyed")
	}
	if !vm.IsSnapshot && vm.PowerState != "Halted" {
		return apiErr(errBadPowerState, vmRef, "halted", strings.ToLower(vm.PowerState))
	}
	if reason, ok := vm.BlockedOps["destroy"]; ok {
		return apiErr(errOpBlocked, vmRef, reason)
	}
	for _, b := range st.vbdsOf(vmRef) {
		delete(st.VBDs, b)
	}
	delete(st.VMs, vmRef)
	return nil
}

// checkDestroyable is xapi's check for VDI.destroy and data_destroy.
func (st *State) checkDestroyable(vdiRef, op string) error {
	v := st.VDIs[vdiRef]
	if sr := st.SRs[v.SR]; sr != nil && sr.ContentType == "iso" {
		return apiErr(errSROpNotSupported, v.SR)
	}
	if st.attached(vdiRef, false) {
		return apiErr(errVDIInUse, vdiRef, op)
	}
	return nil
}

// destroyVDI is VDI.destroy; unplugged VBDs pointing at it go too.
func (s *Sim) destroyVDI(st *State, vdiRef string) error {
	if err := st.checkDestroyable(vdiRef, "destroy"); err != nil {
		return err
	}
	for _, b := range st.vbdsOfVDI(vdiRef) {
		delete(st.VBDs, b)
	}
	delete(st.VDIs, vdiRef)
	return s.collectLayers(st)
}

// dataDestroy is VDI.data_destroy: the snapshot keeps its CBT metadata and
// loses its data.
func (s *Sim) dataDestroy(st *State, vdiRef string) error {
	v := st.VDIs[vdiRef]
	if !v.IsSnapshot {
		return apiErr(errNotAllowed, "VDI is not a snapshot: "+vdiRef)
	}
	if !v.CBTEnabled {
		return apiErr(errNoCBTMetadata, vdiRef)
	}
	if err := st.checkDestroyable(vdiRef, "data_destroy"); err != nil {
		return err
	}
	v.Type, v.Chain = "cbt_metadata", nil
	return s.collectLayers(st)
}

// collectLayers deletes the layer files no VDI's chain names any more.
func (s *Sim) collectLayers(st *State) error {
	used := map[string]bool{}
	for _, v := range st.VDIs {
		for _, l := range v.Chain {
			used[l] = true
		}
	}
	return s.removeUnusedLayers(used)
}

// checkCBTOp is xapi's check for enable_cbt and disable_cbt.
func (st *State) checkCBTOp(vdiRef string) error {
	v := st.VDIs[vdiRef]
	if v.Type == "cbt_metadata" {
		return apiErr(errIncompatibleType, vdiRef, v.Type)
	}
	if v.IsSnapshot {
		return apiErr(errNotAllowed, "VDI is a snapshot: "+vdiRef)
	}
	if v.Type != "user" && v.Type != "system" || st.SRs[v.SR].ContentType == "iso" {
		return apiErr(errIncompatibleType, vdiRef, v.Type)
	}
	return nil
}

// enableCBT starts a new CBT chain unless CBT is on already.
func (s *Sim) enableCBT(st *State, vdiRef string) error {
	if _, ok := st.Switches[SwitchNoCBTLicence]; ok {
		return apiErr(errLicence, "Feature_cbt")
	}
	if err := st.checkCBTOp(vdiRef); err != nil {
		return err
	}
	v := st.VDIs[vdiRef]
	if !v.CBTEnabled {
		v.CBTEnabled, v.CBTChain, v.CBTEpoch = true, newUUID(), 0
	}
	return nil
}

func (st *State) disableCBT(vdiRef string) error {
	if err := st.checkCBTOp(vdiRef); err != nil {
		return err
	}
	v := st.VDIs[vdiRef]
	v.CBTEnabled, v.CBTChain, v.CBTEpoch = false, "", 0
	return nil
}

// listChangedBlocks is VDI.list_changed_blocks: the OR of the CBT epochs
// after from's up to to's, sized for to.
func (s *Sim) listChangedBlocks(st *State, fromRef, toRef string) (string, error) {
	from, to := st.VDIs[fromRef], st.VDIs[toRef]
	if st.attached(toRef, true) {
		return "", apiErr(errVDIInUse, toRef, "list_changed_blocks")
	}
	if fromRef == toRef {
		return "", lcbError("Source and target VDI are same")
	}
	if !from.CBTEnabled || !to.CBTEnabled || from.CBTChain == "" || from.CBTChain != to.CBTChain ||
		from.CBTEpoch >= to.CBTEpoch {
		return "", lcbError("Source and target VDI are unrelated")
	}
	var acc bitmap
	for e := from.CBTEpoch + 1; e <= to.CBTEpoch; e++ {
		b, err := readBitmap(s.cbtBits(to.CBTChain, e))
		if err != nil {
			return "", err
		}
		acc.or(b)
	}
	return base64.StdEncoding.EncodeToString(acc.sized(to.VirtualSize)), nil
}
