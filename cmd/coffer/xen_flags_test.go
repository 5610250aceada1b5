package main

import (
	"reflect"
	"testing"
)

// Flags override the config file's xen: section one by one; naming VMs on
// the command line replaces the file's selection (its vms and all).
func TestXenFlagsOverConfig(t *testing.T) {
	file := xenConfig{URL: "https://pool", PasswordFile: "/etc/pw", Fingerprint: "ab", All: true, Exclude: []string{"test"}, Parallel: 3}
	cases := map[string]struct {
		flags xenFlags
		want  xenConfig
	}{
		"config alone": {xenFlags{}, xenConfig{URL: "https://pool", User: "root", PasswordFile: "/etc/pw", Fingerprint: "ab",
			All: true, Exclude: []string{"test"}, Parallel: 3}},
		"vm flag replaces all": {xenFlags{xenConfig: xenConfig{VMs: []string{"web"}}}, xenConfig{URL: "https://pool", User: "root",
			PasswordFile: "/etc/pw", Fingerprint: "ab", VMs: []string{"web"}, Exclude: []string{"test"}, Parallel: 3}},
		"flags win": {xenFlags{xenConfig: xenConfig{URL: "https://other", User: "admin", CA: "/ca.pem", Exclude: []string{"x"}, Parallel: 1}},
			xenConfig{URL: "https://other", User: "admin", PasswordFile: "/etc/pw", CA: "/ca.pem", Fingerprint: "ab", All: true,
				Exclude: []string{"x"}, Parallel: 1}},
	}
	for name, c := range cases {
		if got := c.flags.merged(&file); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, want %+v", name, got, c.want)
		}
	}
	var x xenFlags
	if !x.wantsXen(&file, "") || x.wantsXen(&file, "disk.img") || x.wantsXen(nil, "") {
		t.Error("a config file with a pool makes a backup without --image a XenServer night, and only that")
	}
}
