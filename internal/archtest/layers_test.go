package archtest

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/cofferhq/coffer"

// productParts are the top-level folders that are parts of the product. They
// sit between cmd and the shared machinery and never import each other.
var productParts = map[string]bool{"uploader": true, "vault": true, "seed": true, "agent": true}

// layer names where a package sits: "cmd", "part:<name>", "internal",
// "crypto", or "harness" (integration tests and tools, free to use anything).
func layer(pkg string) string {
	top, _, _ := strings.Cut(pkg, "/")
	switch {
	case top == "cmd":
		return "cmd"
	case productParts[top]:
		return "part:" + top
	case top == "internal":
		return "internal"
	case top == "crypto":
		return "crypto"
	default:
		return "harness"
	}
}

// allowed reports whether package from (module-relative) may import to, and
// if not, why.
func allowed(from, to string) (bool, string) {
	lf, lt := layer(from), layer(to)
	switch {
	case lf == "harness":
		return true, ""
	case lt == "harness":
		return false, "nothing but tests' harness imports integration/"
	case lt == "cmd":
		return false, "nothing imports a command"
	case lf == "crypto":
		return lt == "crypto", "crypto is the bottom layer: it imports no other package of the module"
	case lf == "internal":
		return lt == "internal" || lt == "crypto", "internal/ imports only internal/ and crypto/, never a product part"
	case strings.HasPrefix(lf, "part:"):
		if strings.HasPrefix(lt, "part:") && lt != lf {
			return false, "product parts never import each other; move what both need into internal/"
		}
		return true, ""
	}
	return true, ""
}

// moduleRoot finds the folder holding go.mod above this test.
func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
}

// imports maps each module-relative package folder to the module packages
// its files (tests included) import.
func imports(t *testing.T, root string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir // a nested module (deploy/composetest)
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := filepath.ToSlash(rel)
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if to, ok := strings.CutPrefix(p, module+"/"); ok {
				if out[pkg] == nil {
					out[pkg] = map[string]bool{}
				}
				out[pkg][to] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLayers fails when any import in the module breaks the arrows.
func TestLayers(t *testing.T) {
	graph := imports(t, moduleRoot(t))
	if len(graph) < 10 {
		t.Fatalf("read only %d packages with module imports: the walk is broken", len(graph))
	}
	var bad []string
	for from, tos := range graph {
		for to := range tos {
			if ok, why := allowed(from, to); !ok {
				bad = append(bad, fmt.Sprintf("%s imports %s: %s", from, to, why))
			}
		}
	}
	sort.Strings(bad)
	for _, b := range bad {
		t.Error(b)
	}
}

// TestRules pins the rules themselves, so a loosened rule fails here.
func TestRules(t *testing.T) {
	cases := []struct {
		from, to string
		ok       bool
	}{
		{"cmd/coffer", "uploader", true},
		{"cmd/cofferd", "vault/registry", true},
		{"uploader", "internal/repo", true},
		{"vault", "vault/ledger", true},
		{"vault/ledger", "vault/registry", true},
		{"internal/repo", "crypto", true},
		{"uploader", "vault", false},
		{"vault/registry", "uploader", false},
		{"seed", "uploader/source", false},
		{"internal/repo", "uploader", false},
		{"internal/store", "vault", false},
		{"crypto", "internal/store", false},
		{"uploader", "cmd/coffer", false},
		{"internal/restore", "integration/bench", false},
		{"integration", "cmd/coffer", true},
	}
	for _, c := range cases {
		if ok, _ := allowed(c.from, c.to); ok != c.ok {
			t.Errorf("allowed(%s, %s) = %v, want %v", c.from, c.to, ok, c.ok)
		}
	}
}

// clockExempt are the folders that may read the wall clock directly: the
// clock itself, and test harnesses and generators that run no product code.
var clockExempt = []string{"internal/clock", "integration", "internal/testutil", "internal/diskgen", "internal/store/storetest"}

// wallClock matches a direct reading of the wall clock.
var wallClock = regexp.MustCompile(`\btime\.(Now|Since|Until)\(`)

// TestOneClock fails when product code reads the wall clock itself instead
// of the injected internal/clock (Clock for decisions, Stopwatch for
// measuring), so that tests can move time for every decision.
func TestOneClock(t *testing.T) {
	root := moduleRoot(t)
	var bad []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "deploy") {
				return filepath.SkipDir
			}
			for _, ex := range clockExempt {
				if rel == ex {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if wallClock.MatchString(line) && !strings.HasPrefix(strings.TrimSpace(line), "//") {
				bad = append(bad, fmt.Sprintf("%s:%d: %s", rel, i+1, strings.TrimSpace(line)))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("reads the wall clock; take a clock.Clock (or clock.Start for a duration): %s", b)
	}
}
