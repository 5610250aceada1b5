package agent

import (
	"path"
	"slices"
	"strings"
)

// VM is what SelectVMs knows of a pool's VM.
type VM struct {
	Name, UUID string
	Tags       []string
}

// SelectVMs returns the UUIDs of the VMs the rules choose, in the order
// given: those an include rule matches (all when there is none), less
// those an exclude rule matches. Excluding wins.
func (r VMRules) SelectVMs(vms []VM) []string {
	var out []string
	for _, vm := range vms {
		included := len(r.Include) == 0 && len(r.IncludeTags) == 0 ||
			matchName(r.Include, vm) || matchTag(r.IncludeTags, vm)
		if included && !matchName(r.Exclude, vm) && !matchTag(r.ExcludeTags, vm) {
			out = append(out, vm.UUID)
		}
	}
	return out
}

func matchName(globs []string, vm VM) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, vm.Name); ok || strings.EqualFold(g, vm.UUID) {
			return true
		}
	}
	return false
}

func matchTag(tags []string, vm VM) bool {
	for _, t := range tags {
		if slices.Contains(vm.Tags, t) {
			return true
		}
	}
	return false
}
