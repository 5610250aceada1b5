package maint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxGroupName is the longest group (VM) name a per-group policy may name.
const MaxGroupName = 255

// Policies is a tenant's retention: a default, and a policy per group (VM)
// that replaces it for that group.
type Policies struct {
	Default  Policy            `json:"default"`
	PerGroup map[string]Policy `json:"per_group,omitempty"`
}

// For is the policy of group.
func (ps Policies) For(group string) Policy {
	if p, ok := ps.PerGroup[group]; ok {
		return p
	}
	return ps.Default
}

// Validate checks the default and every per-group policy and name, naming
// the group that is wrong.
func (ps Policies) Validate() error {
	if err := ps.Default.Validate(); err != nil {
		return fmt.Errorf("default retention policy: %w", err)
	}
	names := make([]string, 0, len(ps.PerGroup))
	for g := range ps.PerGroup {
		names = append(names, g)
	}
	slices.Sort(names)
	for _, g := range names {
		if err := ValidateGroupName(g); err != nil {
			return err
		}
		if err := ps.PerGroup[g].Validate(); err != nil {
			return fmt.Errorf("retention policy of VM %q: %w", g, err)
		}
	}
	return nil
}

// ValidateGroupName checks a group (VM) name from outside: UTF-8, printable,
// not blank, at most MaxGroupName bytes.
func ValidateGroupName(g string) error {
	switch {
	case strings.TrimSpace(g) == "":
		return fmt.Errorf("a per-VM retention policy names no VM: give the VM's name")
	case len(g) > MaxGroupName:
		return fmt.Errorf("VM name %.40q... is longer than %d bytes: give the VM's name as its snapshots carry it", g, MaxGroupName)
	case !utf8.ValidString(g) || strings.ContainsFunc(g, func(r rune) bool { return !unicode.IsPrint(r) }):
		return fmt.Errorf("VM name %q holds bytes that are not printable text: give the VM's name as its snapshots carry it", g)
	}
	return nil
}

// DecodePolicies reads Policies from JSON as the registry stores them and
// validates them. Unknown fields and trailing data are refused.
func DecodePolicies(b []byte) (Policies, error) {
	var ps Policies
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ps); err != nil {
		return Policies{}, fmt.Errorf("retention policies are not valid JSON: %w", err)
	}
	if err := dec.Decode(&struct{}{}); err != io.EOF {
		return Policies{}, fmt.Errorf("retention policies: data after the JSON object")
	}
	if err := ps.Validate(); err != nil {
		return Policies{}, err
	}
	return ps, nil
}

// CheckSet is Validate for a tenant's stored policies, where the default
// may be empty: VMs without a policy of their own then keep everything.
// Every per-VM policy must validate, and at least one policy must keep
// something.
func (ps Policies) CheckSet() error {
	if ps.Default.Empty() {
		if len(ps.PerGroup) == 0 {
			return fmt.Errorf("retention: %w", ErrKeepsNothing)
		}
		ps.Default = Policy{Last: 1} // stands in: never applied
	}
	return ps.Validate()
}
