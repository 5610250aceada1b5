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

// helpFlag matches a flag line of cobra's help: "  -l, --listen string   ..."
// or "      --allow-plain-http   ..." (a bool flag has no type word).
var helpFlag = regexp.MustCompile(`(?m)^\s*(?:-[a-zA-Z], )?--([a-z0-9][a-z0-9-]*)(?: ([a-zA-Z0-9.]+))?(?:\s{2,}|$)`)

// parseHelpFlags returns the long flags a help text lists, each with
// whether it takes a value.
func parseHelpFlags(help string) map[string]bool {
	flags := map[string]bool{}
	for _, m := range helpFlag.FindAllStringSubmatch(help, -1) {
		flags[m[1]] = m[2] != ""
	}
	return flags
}

// knownFlags returns the long flags `cofferd ARGS... --help` lists.
func knownFlags(t *testing.T, args ...string) map[string]bool {
	t.Helper()
	bin := cofferd(t)
	out, err := exec.Command(bin, append(args, "--help")...).CombinedOutput()
	if err != nil {
		t.Fatalf("cofferd %s --help: %v\n%s", strings.Join(args, " "), err, out)
	}
	flags := parseHelpFlags(string(out))
	if len(flags) == 0 {
		t.Fatalf("cofferd %s --help lists no flags:\n%s", strings.Join(args, " "), out)
	}
	return flags
}

// flagProblems lists every --flag in args that known does not hold, and
// every flag that takes a value but is given none.
func flagProblems(known map[string]bool, args []string) []string {
	var problems []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			problems = append(problems, fmt.Sprintf("%q is not a --flag", a))
			continue
		}
		name, _, inline := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		takesValue, ok := known[name]
		switch {
		case !ok:
			problems = append(problems, "unknown flag --"+name)
		case takesValue && !inline:
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "--") {
				problems = append(problems, "--"+name+" has no value")
			} else {
				i++
			}
		case !takesValue && inline:
			problems = append(problems, "--"+name+" takes no value")
		}
	}
	return problems
}

// checkFlags fails for every problem flagProblems finds in args against
// `cofferd sub... --help`.
func checkFlags(t *testing.T, where string, sub []string, args []string) {
	t.Helper()
	for _, p := range flagProblems(knownFlags(t, sub...), args) {
		t.Errorf("%s: %s (cofferd %s)", where, p, strings.Join(sub, " "))
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

func TestFlagChecks(t *testing.T) {
	help := `Serve the vault.

Usage:
  cofferd serve [flags]

Flags:
      --allow-plain-http        serve plain HTTP on a non-loopback address
  -h, --help                    help for serve
      --listen string           address to listen on (default ":8443")
      --max-object-size bytes   largest object
      --tls-cert string         certificate file

Global Flags:
      --store string   store URL (env COFFER_STORE)
`
	known := parseHelpFlags(help)
	want := map[string]bool{"allow-plain-http": false, "help": false, "listen": true, "max-object-size": true, "tls-cert": true, "store": true}
	if fmt.Sprint(known) != fmt.Sprint(want) {
		t.Fatalf("parseHelpFlags = %v, want %v", known, want)
	}
	for _, tc := range []struct {
		args []string
		bad  int
	}{
		{[]string{"--listen", ":8443", "--allow-plain-http", "--tls-cert=/x"}, 0},
		{[]string{"--listen"}, 1},
		{[]string{"--listen", "--allow-plain-http"}, 1},
		{[]string{"--tls-key", "/k"}, 2}, // unknown flag, then a stray value
		{[]string{"--allow-plain-http=true"}, 1},
		{[]string{"serve"}, 1},
	} {
		if got := flagProblems(known, tc.args); len(got) != tc.bad {
			t.Errorf("flagProblems(%v) = %q, want %d problems", tc.args, got, tc.bad)
		}
	}
}
