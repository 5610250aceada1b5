package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestPick(t *testing.T) {
	for _, c := range []struct{ linked, module, commit, want string }{
		{"v9.9.9", "v1.0.0", "abc", "v9.9.9"},
		{"", "v1.2.3", "0123456789abcdef", "v1.2.3"},
		{"", "(devel)", "0123456789abcdef", "devel+0123456789ab"},
		{"", "(devel)", "", "devel"},
		{"", "", "", "devel"},
	} {
		if got := pick(c.linked, c.module, c.commit); got != c.want {
			t.Errorf("pick(%q, %q, %q) = %q, want %q", c.linked, c.module, c.commit, got, c.want)
		}
	}
}

func TestInfo(t *testing.T) {
	b := Info()
	if b.GoVersion != runtime.Version() || b.Version == "" || b.Version != Version() || b.OS != runtime.GOOS {
		t.Fatalf("Info() = %+v", b)
	}
	s := Build{Version: "v1.0.0", GoVersion: "go1.26.8", Commit: "0123456789abcdef0123", Modified: true, OS: "linux", Arch: "amd64"}.String()
	if s != "v1.0.0 (commit 0123456789ab with local changes, go1.26.8 linux/amd64)" || !strings.HasPrefix(Build{Version: "devel", GoVersion: "go1", OS: "a", Arch: "b"}.String(), "devel (go1 a/b)") {
		t.Fatalf("String() = %q", s)
	}
}
