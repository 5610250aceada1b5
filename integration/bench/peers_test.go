package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPeersEnv(t *testing.T) {
	if peerVersions[toolRestic] != "0.19.1" || peerVersions[toolKopia] != "0.23.1" {
		t.Errorf("peers.env: %v, want restic 0.19.1 and kopia 0.23.1 (PRODUCT.md)", peerVersions)
	}
	for _, bad := range []string{
		"RESTIC_VERSION=0.19.1\n",                      // no kopia
		"RESTIC_VERSION=0.19.1\nKOPIA_VERSION=\n",      // empty
		"RESTIC_VERSION=0.19.1\nKOPIA=0.23.1\n",        // not NAME_VERSION
		"RESTIC_VERSION=$(id)\nKOPIA_VERSION=0.23.1\n", // not a version
		"RESTIC_VERSION=../x\nKOPIA_VERSION=0.23.1\n",  // a path
	} {
		if v, err := parsePeers(bad); err == nil {
			t.Errorf("parsePeers(%q) = %v, want an error", bad, v)
		}
	}
}

// fakeTool writes an executable script that prints out.
func fakeTool(t *testing.T, path, out string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\necho '"+out+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// The bench runs only the versioned file names of install-peers.sh, and
// refuses one that reports another version: an older restic left in the
// tools folder is never benchmarked by accident.
func TestFindToolsPeerVersions(t *testing.T) {
	dir := t.TempDir()
	rv, kv := peerVersions[toolRestic], peerVersions[toolKopia]
	// Unversioned names, as older install scripts left them: never used.
	fakeTool(t, filepath.Join(dir, "restic"), "restic "+rv+" compiled with go1.26")
	fakeTool(t, filepath.Join(dir, "kopia"), kv+" build: x")
	// A versioned restic that is really another version.
	fakeTool(t, filepath.Join(dir, "restic-"+rv), "restic 0.18.1 compiled with go1.25")

	b := &bench{cfg: config{Tools: []string{toolRestic, toolKopia}, ToolsDir: dir}, out: io.Discard, res: &Results{}}
	b.findTools(context.Background())
	if len(b.bins) != 0 {
		t.Errorf("tools accepted: %v", b.bins)
	}
	want := map[string]string{
		toolRestic: "reports version 0.18.1, want " + rv,
		toolKopia:  "kopia " + kv + " not installed at " + filepath.Join(dir, "kopia-"+kv),
	}
	for _, info := range b.res.Tools {
		if !strings.Contains(info.Missing, want[info.Name]) || !strings.Contains(info.Missing, "install-peers.sh") {
			t.Errorf("%s: missing = %q, want it to say %q and how to fix it", info.Name, info.Missing, want[info.Name])
		}
	}

	fakeTool(t, filepath.Join(dir, "restic-"+rv), "restic "+rv+" compiled with go1.26")
	fakeTool(t, filepath.Join(dir, "kopia-"+kv), kv+" build: coffer-bench")
	b = &bench{cfg: config{Tools: []string{toolRestic, toolKopia}, ToolsDir: dir}, out: io.Discard, res: &Results{}}
	b.findTools(context.Background())
	if b.bins[toolRestic] != filepath.Join(dir, "restic-"+rv) || b.bins[toolKopia] != filepath.Join(dir, "kopia-"+kv) {
		t.Errorf("bins = %v, want the versioned files", b.bins)
	}
	for _, info := range b.res.Tools {
		if info.Missing != "" || info.Version != peerVersions[info.Name] {
			t.Errorf("%s: %+v", info.Name, info)
		}
	}
}
