package composetest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// repoRoot is the checkout this module sits in (deploy/composetest/..).
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot find the test's source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatalf("read %s: %v", rel, err)
	}
	return string(b)
}

var (
	cofferdOnce sync.Once
	cofferdBin  string
	cofferdErr  error
	cofferdDir  string
)

// cofferd builds cmd/cofferd once per test binary and returns its path. When
// the command does not exist (yet) it skips; once it exists, a build failure
// or an unknown flag fails.
func cofferd(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "cmd", "cofferd", "main.go")); err != nil {
		t.Skip("cmd/cofferd does not exist yet; the flag checks need it")
	}
	cofferdOnce.Do(func() {
		cofferdDir, cofferdErr = os.MkdirTemp("", "coffer-deploytest-")
		if cofferdErr != nil {
			return
		}
		cofferdBin = filepath.Join(cofferdDir, "cofferd")
		cmd := exec.Command("go", "build", "-o", cofferdBin, "./cmd/cofferd")
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			cofferdErr = fmt.Errorf("go build ./cmd/cofferd: %v\n%s", err, out.String())
		}
	})
	if cofferdErr != nil {
		t.Fatal(cofferdErr)
	}
	return cofferdBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cofferdDir != "" {
		os.RemoveAll(cofferdDir)
	}
	os.Exit(code)
}

var longFlag = regexp.MustCompile(`(?m)^\s*(?:-[a-zA-Z], )?--([a-z0-9][a-z0-9-]*)`)

// knownFlags returns the long flags `cofferd ARGS... --help` lists.
func knownFlags(t *testing.T, args ...string) map[string]bool {
	t.Helper()
	bin := cofferd(t)
	cmd := exec.Command(bin, append(args, "--help")...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cofferd %s --help: %v\n%s", strings.Join(args, " "), err, out)
	}
	flags := map[string]bool{}
	for _, m := range longFlag.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		t.Fatalf("cofferd %s --help lists no flags:\n%s", strings.Join(args, " "), out)
	}
	return flags
}

// checkFlags fails for every --flag in args that `cofferd sub --help` does
// not list, and for a flag that needs a value but has none.
func checkFlags(t *testing.T, where string, sub []string, args []string) {
	t.Helper()
	known := knownFlags(t, sub...)
	for i, a := range args {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !known[name] {
			t.Errorf("%s passes --%s, which `cofferd %s` does not know", where, name, strings.Join(sub, " "))
		}
		if !strings.Contains(a, "=") && name != "allow-plain-http" && (i+1 >= len(args) || strings.HasPrefix(args[i+1], "--")) {
			t.Errorf("%s: --%s has no value", where, name)
		}
	}
}

// flagValue returns the value of --name in args ("" when absent).
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}
