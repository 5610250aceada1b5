package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// version may be set at link time (-ldflags "-X
// github.com/cofferhq/coffer/internal/buildinfo.version=v1.2.3"); it wins
// over the module version.
var version string

// Build describes the running binary.
type Build struct {
	Version    string `json:"version"`
	GoVersion  string `json:"go_version"`
	Commit     string `json:"commit,omitempty"`      // VCS revision, when the build recorded it
	CommitTime string `json:"commit_time,omitempty"` // RFC 3339, when recorded
	Modified   bool   `json:"modified,omitempty"`    // built from a work tree with changes
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

// Info returns the build information of the running binary.
func Info() Build {
	b := Build{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		b.Version = bi.Main.Version
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.CommitTime = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	b.Version = pick(version, b.Version, b.Commit)
	return b
}

// pick chooses the version to show: the one set at link time, else the
// module's (go install pkg@v1.2.3), else "devel" with the commit when known.
func pick(linked, module, commit string) string {
	switch {
	case linked != "":
		return linked
	case module != "" && module != "(devel)":
		return module
	case commit != "":
		return "devel+" + commit[:min(12, len(commit))]
	}
	return "devel"
}

// Version returns the version of the running binary ("devel" for a build
// from a checkout without version control information).
func Version() string { return Info().Version }

// String formats b on one line: "v1.2.3 (commit abc123def456, go1.26.8
// linux/amd64)".
func (b Build) String() string {
	var parts []string
	if b.Commit != "" {
		c := "commit " + b.Commit[:min(12, len(b.Commit))]
		if b.Modified {
			c += " with local changes"
		}
		parts = append(parts, c)
	}
	parts = append(parts, b.GoVersion+" "+b.OS+"/"+b.Arch)
	return b.Version + " (" + strings.Join(parts, ", ") + ")"
}
