package judge

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Need returns the path of the judge cmd, or skips the test when it is not
// installed; under COFFER_REQUIRE_JUDGES=1 (`make test`) a missing judge
// fails the test instead.
func Need(t testing.TB, cmd string) string {
	t.Helper()
	path, err := exec.LookPath(cmd)
	if err == nil {
		return path
	}
	reason := fmt.Sprintf("%s is not installed: run `make judges`", cmd)
	if os.Getenv("COFFER_REQUIRE_JUDGES") == "1" {
		t.Fatalf("%s (COFFER_REQUIRE_JUDGES=1: the judges must run)", reason)
	}
	t.Skip(reason)
	return ""
}

// Run runs a judge and returns its combined output; the test fails when it
// exits non-zero or runs over a minute.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}
