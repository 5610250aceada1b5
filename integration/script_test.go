package integration

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cofferhq/coffer/internal/diskgen"
)

var updateScripts = flag.Bool("update-scripts", false, "rewrite the expected output in testdata/script when it differs")

// TestScripts runs the command-line scripts of testdata/script against the
// real coffer and cofferd binaries: the documented JSON shape of each
// command's output (jsonshape), its exit codes and its messages. Run with
// -update-scripts to rewrite the expected shapes after a deliberate change.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/script",
		UpdateScripts: *updateScripts,
		Setup: func(e *testscript.Env) error {
			home := filepath.Join(e.WorkDir, "home")
			e.Setenv("PATH", filepath.Dir(cofferBin)+string(os.PathListSeparator)+e.Getenv("PATH"))
			e.Setenv("HOME", home)
			e.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
			e.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
			e.Setenv("XDG_STATE_HOME", filepath.Join(home, ".local", "state"))
			e.Setenv("COFFER_PASSWORD", "correct horse battery staple")
			e.Setenv("COFFER_INSECURE_TEST_KDF", "1")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"jsonshape": cmdJSONShape,
			"diskgen":   cmdDiskgen,
			"simserve":  cmdSimServe,
		},
	})
}

// cmdJSONShape reads a file of JSON values (stdout or stderr of the last
// command, or a file; one a line or indented) and writes the shape of each
// to stdout: one line per leaf, "path: type", keys sorted, array elements
// merged under "[]", values separated by "--". Anything that is not JSON
// fails the script.
//
//	jsonshape stdout
func cmdJSONShape(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: jsonshape FILE")
	}
	dec := json.NewDecoder(strings.NewReader(ts.ReadFile(args[0])))
	n := 0
	for {
		var v any
		err := dec.Decode(&v)
		if err == io.EOF {
			break
		}
		if err != nil {
			ts.Fatalf("value %d of %s is not JSON: %v", n+1, args[0], err)
		}
		if n > 0 {
			fmt.Fprintln(ts.Stdout(), "--")
		}
		leaves := map[string]string{}
		shape("", v, leaves)
		keys := make([]string, 0, len(leaves))
		for k := range leaves {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(ts.Stdout(), "%s: %s\n", k, leaves[k])
		}
		n++
	}
	if n == 0 {
		ts.Fatalf("%s holds no JSON", args[0])
	}
}

func shape(path string, v any, out map[string]string) {
	add := func(t string) {
		if prev, ok := out[path]; ok && prev != t {
			t = prev + "|" + t
		}
		out[path] = t
	}
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			add("{}")
		}
		for k, e := range x {
			p := k
			if path != "" {
				p = path + "." + k
			}
			shape(p, e, out)
		}
	case []any:
		if len(x) == 0 {
			add("[]")
		}
		for _, e := range x {
			shape(path+"[]", e, out)
		}
	case string:
		add("string")
	case float64:
		add("number")
	case bool:
		add("bool")
	case nil:
		add("null")
	}
}

// cmdDiskgen writes a deterministic disk image of the reference mix.
//
//	diskgen SIZE SEED FILE
func cmdDiskgen(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: diskgen SIZE SEED FILE")
	}
	size, err := humanize.ParseBytes(args[0])
	ts.Check(err)
	seed, err := strconv.ParseUint(args[1], 10, 64)
	ts.Check(err)
	ts.Check(diskgen.Generate(ts.MkAbs(args[2]), int64(size), seed, diskgen.Options{}))
}

// cmdSimServe waits for a running xapisim serve on the state folder DIR
// and sets XEN_URL and XEN_FP to its URL and certificate fingerprint.
//
//	exec xapisim serve --state DIR --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 &
//	simserve DIR
func cmdSimServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: simserve DIR")
	}
	path := filepath.Join(ts.MkAbs(args[0]), "serve.json")
	for i := 0; i < 1000; i++ {
		var info struct{ URL, Fingerprint string }
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &info) == nil && info.URL != "" {
			ts.Setenv("XEN_URL", info.URL)
			ts.Setenv("XEN_FP", info.Fingerprint)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	ts.Fatalf("xapisim serve did not start on %s", args[0])
}
