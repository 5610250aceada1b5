package main

import (
	_ "embed"
	"fmt"
	"path/filepath"
	"strings"
)

// peersEnv sets the peers' versions; scripts/install-peers.sh sources the
// same file, so the installer and the bench cannot disagree.
//
//go:embed peers.env
var peersEnv string

// peerVersions maps each peer to the version the bench runs; peersErr
// says why peers.env could not be read (run refuses to start then).
var peerVersions, peersErr = parsePeers(peersEnv)

// parsePeers reads NAME_VERSION=X.Y.Z lines; '#' starts a comment.
func parsePeers(env string) (map[string]string, error) {
	v := map[string]string{}
	for i, line := range strings.Split(env, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, val, ok := strings.Cut(line, "=")
		name, isVersion := strings.CutSuffix(k, "_VERSION")
		if !ok || !isVersion || val == "" || strings.ContainsAny(val, " \t\"'$/") {
			return nil, fmt.Errorf("peers.env line %d: want NAME_VERSION=X.Y.Z, got %q", i+1, line)
		}
		v[strings.ToLower(name)] = val
	}
	for _, p := range []string{toolRestic, toolKopia} {
		if v[p] == "" {
			return nil, fmt.Errorf("peers.env sets no %s_VERSION", strings.ToUpper(p))
		}
	}
	return v, nil
}

// peerPath is where scripts/install-peers.sh installs a peer: its name and
// version, so that an older binary in the same folder is never run.
func peerPath(toolsDir, tool string) string {
	return filepath.Join(toolsDir, tool+"-"+peerVersions[tool])
}

// checkPeerVersion fails unless a peer reports the version the bench wants.
func checkPeerVersion(tool, path, got string) error {
	if want := peerVersions[tool]; got != want {
		return fmt.Errorf("%s reports version %s, want %s (run scripts/install-peers.sh)", path, got, want)
	}
	return nil
}
