package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestVersion(t *testing.T) {
	defer func(v string, r func() (*debug.BuildInfo, bool)) { version, readBuildInfo = v, r }(version, readBuildInfo)
	info := func(main string, settings ...debug.BuildSetting) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{Main: debug.Module{Version: main}, Settings: settings}, true
		}
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0eac4b8c1d2e3f405162738495a6b7c8d9e0f1a2"}
	cases := []struct {
		name, linked string
		read         func() (*debug.BuildInfo, bool)
		want         string
	}{
		{"link-time value wins", "v1.4.0", info("v1.3.0", rev), "v1.4.0"},
		{"module version", "", info("v1.3.0", rev), "v1.3.0"},
		{"checkout", "", info("(devel)", rev), "devel-0eac4b8c1d2e"},
		{"modified checkout", "", info("(devel)", rev, debug.BuildSetting{Key: "vcs.modified", Value: "true"}), "devel-0eac4b8c1d2e-dirty"},
		{"no VCS", "", info("(devel)"), "devel"},
		{"no build info", "", func() (*debug.BuildInfo, bool) { return nil, false }, "devel"},
	}
	for _, c := range cases {
		version, readBuildInfo = c.linked, c.read
		if got := Version(); got != c.want {
			t.Errorf("%s: Version() = %q, want %q", c.name, got, c.want)
		}
	}
}
