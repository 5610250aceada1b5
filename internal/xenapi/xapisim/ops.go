package xapisim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
)

// Init creates a state folder: one pool with one host, a local SR, an ISO
// SR with one ISO, a network with purpose nbd, the control domain, and the
// user root with password.
func Init(dir, password string, c clock.Clock) (*Sim, error) {
	if password == "" {
		return nil, errors.New("the password is empty: write it into the password file")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create state folder: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); err == nil {
		return nil, fmt.Errorf("state folder %s is already initialised: use another folder or remove it", dir)
	}
	s := &Sim{Dir: dir, Clock: clock.Or(c)}
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s, s.save(newState(password))
}

func newState(password string) *State {
	salt := newUUID()
	st := &State{Version: stateVersion, Password: PasswordHash{Salt: salt, Hash: hashPassword(salt, password)},
		SRs: map[string]*SR{}, Networks: map[string]*Network{}, VMs: map[string]*VM{}, VBDs: map[string]*VBD{},
		VDIs: map[string]*VDI{}, Sessions: map[string]*Session{}, Tasks: map[string]*Task{},
		Switches: map[string]string{}}
	pu, pref := newRef()
	hu, href := newRef()
	su, sref := newRef()
	st.Host = &Host{UUID: hu, Ref: href, NameLabel: "xapisim", Address: "127.0.0.1"}
	st.Pool = &Pool{UUID: pu, Ref: pref, NameLabel: "xapisim pool", DefaultSR: sref}
	st.SRs[sref] = &SR{UUID: su, NameLabel: "Local storage", Type: "ext", ContentType: "user", PhysSize: 1 << 42}
	iu, iref := newRef()
	st.SRs[iref] = &SR{UUID: iu, NameLabel: "XenServer Tools", Type: "iso", ContentType: "iso"}
	vu, vref := newRef()
	st.VDIs[vref] = &VDI{UUID: vu, NameLabel: "guest-tools.iso", SR: iref, Type: "user", VirtualSize: 64 << 20,
		ReadOnly: true, OtherConfig: map[string]string{}}
	nu, nref := newRef()
	st.Networks[nref] = &Network{UUID: nu, NameLabel: "Pool-wide network associated with eth0", Purpose: []string{"nbd"}}
	du, dref := newRef()
	st.VMs[dref] = &VM{UUID: du, NameLabel: "Control domain on host: xapisim", PowerState: "Running",
		IsControlDomain: true, Tags: []string{}, OtherConfig: map[string]string{}, BlockedOps: map[string]string{}}
	return st
}

// isoVDI is the ISO library's VDI.
func (st *State) isoVDI() string {
	for ref, v := range st.VDIs {
		if sr := st.SRs[v.SR]; sr != nil && sr.ContentType == "iso" {
			return ref
		}
	}
	return nullRef
}

func (st *State) controlDomain() string {
	for ref, vm := range st.VMs {
		if vm.IsControlDomain {
			return ref
		}
	}
	return nullRef
}

// ParseSize reads a disk size such as 64M, 1G, 16G or a byte count; it
// must be a positive multiple of 512.
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult > 1 {
			num = s[:n-1]
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v <= 0 || v > (1<<50)/mult || v*mult%512 != 0 {
		return 0, fmt.Errorf("disk size %q: want a positive size such as 64M, 1G or 16G (a multiple of 512 bytes, at most 1P)", s)
	}
	return v * mult, nil
}

// CreateVM adds a running VM with one empty disk per size (userdevice 0, 1,
// ...) and, with cd, a CD drive holding the ISO. It returns the VM's uuid.
func (s *Sim) CreateVM(name string, sizes []int64, cd bool) (string, error) {
	return s.CreateVMState(name, sizes, cd, false)
}

// CreateVMState is CreateVM; halted makes a halted VM whose VBDs are not
// attached.
func (s *Sim) CreateVMState(name string, sizes []int64, cd, halted bool) (string, error) {
	power := "Running"
	if halted {
		power = "Halted"
	}
	if name == "" {
		return "", errors.New("the VM needs a name")
	}
	var uuid string
	err := s.Update(func(st *State) error {
		u, ref := newRef()
		uuid = u
		st.VMs[ref] = &VM{UUID: u, NameLabel: name, PowerState: power, Tags: []string{},
			OtherConfig: map[string]string{}, BlockedOps: map[string]string{}}
		for i, size := range sizes {
			layer, err := s.newLayer(size)
			if err != nil {
				return err
			}
			vu, vref := newRef()
			st.VDIs[vref] = &VDI{UUID: vu, NameLabel: fmt.Sprintf("%s disk %d", name, i), SR: st.Pool.DefaultSR,
				Type: "user", VirtualSize: size, OtherConfig: map[string]string{}, Chain: []string{layer}}
			bu, bref := newRef()
			st.VBDs[bref] = &VBD{UUID: bu, VM: ref, VDI: vref, UserDevice: strconv.Itoa(i), Type: "Disk", Mode: "RW", Attached: !halted}
		}
		if cd {
			bu, bref := newRef()
			st.VBDs[bref] = &VBD{UUID: bu, VM: ref, VDI: st.isoVDI(), UserDevice: strconv.Itoa(max(3, len(sizes))),
				Type: "CD", Mode: "RO", Attached: !halted}
		}
		return nil
	})
	return uuid, err
}

// srFree is an SR's physical size less the virtual sizes of its VDIs
// (the simulator allocates disks thick).
func (st *State) srFree(sr string) int64 {
	free := st.SRs[sr].PhysSize
	for _, v := range st.VDIs {
		if v.SR == sr {
			free -= v.VirtualSize
		}
	}
	return free
}

// SetSRSize sets the physical size of an SR named by uuid or name-label
// (to make a full SR).
func (s *Sim) SetSRSize(id string, size int64) error {
	if size < 0 {
		return fmt.Errorf("SR size %d is negative", size)
	}
	return s.Update(func(st *State) error {
		for _, sr := range st.SRs {
			if sr.UUID == id || sr.NameLabel == id {
				sr.PhysSize = size
				return nil
			}
		}
		return fmt.Errorf("no SR named or with uuid %q", id)
	})
}

// findVM finds a VM (not a snapshot, not the control domain) by uuid or
// name.
func (st *State) findVM(id string) (string, error) {
	var found []string
	for ref, vm := range st.VMs {
		if vm.IsSnapshot || vm.IsControlDomain {
			continue
		}
		if vm.UUID == id || vm.NameLabel == id {
			found = append(found, ref)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("no VM named or with uuid %q (see xapisim vm list)", id)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%d VMs are named %q: name it by uuid", len(found), id)
}

// findDisk finds the VDI of VM id's disk VBD with userdevice n.
func (st *State) findDisk(id string, n int) (string, *VDI, error) {
	vmRef, err := st.findVM(id)
	if err != nil {
		return "", nil, err
	}
	for _, vbd := range st.vbdsOf(vmRef) {
		b := st.VBDs[vbd]
		if b.Type == "Disk" && b.UserDevice == strconv.Itoa(n) && b.VDI != nullRef {
			return b.VDI, st.VDIs[b.VDI], nil
		}
	}
	return "", nil, fmt.Errorf("VM %q has no disk %d (userdevice %d)", id, n, n)
}

// vbdsOf lists a VM's VBD refs, sorted by userdevice.
func (st *State) vbdsOf(vmRef string) []string {
	var out []string
	for ref, b := range st.VBDs {
		if b.VM == vmRef {
			out = append(out, ref)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		x, _ := strconv.Atoi(st.VBDs[a].UserDevice)
		y, _ := strconv.Atoi(st.VBDs[b].UserDevice)
		return x - y
	})
	return out
}

// vbdsOfVDI lists the VBD refs that point at a VDI.
func (st *State) vbdsOfVDI(vdiRef string) []string {
	var out []string
	for ref, b := range st.VBDs {
		if b.VDI == vdiRef {
			out = append(out, ref)
		}
	}
	slices.Sort(out)
	return out
}

// attached reports whether a VDI has a plugged VBD, ignoring VBDs of
// snapshot VMs when ignoreSnapshots.
func (st *State) attached(vdiRef string, ignoreSnapshots bool) bool {
	for _, ref := range st.vbdsOfVDI(vdiRef) {
		b := st.VBDs[ref]
		if b.Attached && !(ignoreSnapshots && st.VMs[b.VM].IsSnapshot) {
			return true
		}
	}
	return false
}

// snapshotTime formats a time as xapi's datetimes.
func xapiTime(t time.Time) string {
	if t.IsZero() {
		return "19700101T00:00:00Z"
	}
	return t.UTC().Format("20060102T15:04:05Z")
}
