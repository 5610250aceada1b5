package xapisim

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// The field-failure switches (xapisim switch NAME[=VALUE]).
const (
	SwitchNoCBTLicence    = "no-cbt-licence"   // enable_cbt -> LICENCE_RESTRICTION
	SwitchOldVersion      = "old-version"      // CBT calls, get_nbd_info -> MESSAGE_METHOD_UNKNOWN
	SwitchNBDDisabled     = "nbd-disabled"     // no network has purpose nbd
	SwitchNBDInUseRace    = "nbd-in-use-race"  // a second connection while one is set up is closed
	SwitchNBDDropEvery    = "nbd-drop-every"   // =N: every Nth READ drops its connection
	SwitchSnapshotFail    = "snapshot-fail"    // =VM|all: VM.snapshot -> SR_BACKEND_FAILURE_82
	SwitchLeakAttachments = "leak-attachments" // an abrupt NBD close leaves its dom0 VBD attached
	SwitchLCBSlow         = "lcb-slow"         // =N: Async list_changed_blocks pending for N polls
	SwitchImportFail      = "import-fail"      // =N: the Nth chunked import_raw_vdi from now fails half-way
	SwitchMetadataFail    = "metadata-fail"    // import_metadata fails (IMPORT_ERROR) after its checks
	switchValueNone       = ""
	switchValueCount      = "count"
	switchValueVM         = "vm"
)

// switchValues says which switches take a value, and of what kind.
var switchValues = map[string]string{
	SwitchNoCBTLicence: switchValueNone, SwitchOldVersion: switchValueNone, SwitchNBDDisabled: switchValueNone,
	SwitchNBDInUseRace: switchValueNone, SwitchNBDDropEvery: switchValueCount, SwitchSnapshotFail: switchValueVM,
	SwitchLeakAttachments: switchValueNone, SwitchLCBSlow: switchValueCount, SwitchImportFail: switchValueCount,
	SwitchMetadataFail: switchValueNone,
}

// SwitchNames lists the switches.
func SwitchNames() []string {
	var out []string
	for k := range switchValues {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// parseSwitch checks "NAME" or "NAME=VALUE".
func parseSwitch(arg string) (name, value string, err error) {
	name, value, hasValue := strings.Cut(arg, "=")
	kind, ok := switchValues[name]
	if !ok {
		return "", "", fmt.Errorf("unknown switch %q: known are %s", name, strings.Join(SwitchNames(), ", "))
	}
	switch kind {
	case switchValueNone:
		if hasValue {
			return "", "", fmt.Errorf("switch %s takes no value", name)
		}
	case switchValueCount:
		n, err := strconv.Atoi(value)
		if err != nil || n < 1 {
			return "", "", fmt.Errorf("switch %s needs a count >= 1 (%s=N)", name, name)
		}
	case switchValueVM:
		if value == "" {
			return "", "", fmt.Errorf("switch %s needs a VM name or uuid, or all (%s=VM)", name, name)
		}
	}
	return name, value, nil
}

// SetSwitch turns a switch on ("NAME" or "NAME=VALUE").
func (s *Sim) SetSwitch(arg string) error {
	name, value, err := parseSwitch(arg)
	if err != nil {
		return err
	}
	return s.Update(func(st *State) error {
		st.Switches[name] = value
		return nil
	})
}

// ClearSwitch turns a switch off.
func (s *Sim) ClearSwitch(name string) error {
	if _, ok := switchValues[name]; !ok {
		return fmt.Errorf("unknown switch %q: known are %s", name, strings.Join(SwitchNames(), ", "))
	}
	return s.Update(func(st *State) error {
		delete(st.Switches, name)
		return nil
	})
}

// switchCount is a count switch's value, 0 when off.
func (st *State) switchCount(name string) int {
	v, ok := st.Switches[name]
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(v)
	return n
}

// takeCountdown counts one event down on a count switch: true when this
// is the event it names (the switch then turns off).
func (st *State) takeCountdown(name string) bool {
	n := st.switchCount(name)
	switch {
	case n <= 0:
		return false
	case n == 1:
		delete(st.Switches, name)
		return true
	}
	st.Switches[name] = strconv.Itoa(n - 1)
	return false
}
