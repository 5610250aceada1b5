package composetest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// unit is a parsed systemd unit file: section -> key -> values in order
// (a key may repeat, as LoadCredential= and SystemCallFilter= do).
type unit map[string]map[string][]string

func (u unit) get(section, key string) []string { return u[section][key] }

func (u unit) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// parseUnit reads the systemd unit syntax: [Section] headers, Key=Value
// lines, # and ; comments, and backslash line continuations.
func parseUnit(text string) (unit, error) {
	u := unit{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	n, pending := 0, ""
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if pending == "" && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			pending += strings.TrimSpace(strings.TrimSuffix(line, "\\")) + " "
			continue
		}
		line, pending = pending+line, ""
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: bad section header %q", n, line)
			}
			section = line[1 : len(line)-1]
			if _, dup := u[section]; dup {
				return nil, fmt.Errorf("line %d: section [%s] twice", n, section)
			}
			u[section] = map[string][]string{}
			continue
		}
		if section == "" {
			return nil, fmt.Errorf("line %d: %q before any section", n, line)
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("line %d: %q is not Key=Value", n, line)
		}
		k = strings.TrimSpace(k)
		u[section][k] = append(u[section][k], strings.TrimSpace(v))
	}
	if pending != "" {
		return nil, fmt.Errorf("the file ends inside a continued line")
	}
	return u, sc.Err()
}

func TestParseUnit(t *testing.T) {
	u, err := parseUnit("# c\n[A]\nX=1\n; c\nX = 2\nY=a \\\n  b\n[B]\nZ=\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.get("A", "X"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("X = %v", got)
	}
	if got := u.last("A", "Y"); got != "a b" {
		t.Errorf("Y = %q", got)
	}
	if _, ok := u["B"]["Z"]; !ok {
		t.Error("empty value lost")
	}
	for _, bad := range []string{"X=1\n", "[A\n", "[A]\nnovalue\n", "[A]\n[A]\n", "[A]\nX=1 \\\n"} {
		if _, err := parseUnit(bad); err == nil {
			t.Errorf("parseUnit(%q) accepted it", bad)
		}
	}
}

func loadUnit(t *testing.T) unit {
	t.Helper()
	u, err := parseUnit(readFile(t, "deploy/cofferd.service"))
	if err != nil {
		t.Fatalf("deploy/cofferd.service: %v", err)
	}
	return u
}

// execStart splits ExecStart= into words (the unit uses no quoting).
func execStart(t *testing.T, u unit) []string {
	t.Helper()
	v := u.get("Service", "ExecStart")
	if len(v) != 1 {
		t.Fatalf("ExecStart= given %d times, want once", len(v))
	}
	if strings.ContainsAny(v[0], `"'`) {
		t.Fatalf("ExecStart %q: the test's word splitting does not handle quotes", v[0])
	}
	return strings.Fields(v[0])
}

func TestSystemdUnit(t *testing.T) {
	u := loadUnit(t)
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Errorf("no [%s] section", s)
		}
	}
	want := map[string]string{
		"Type":                    "exec",
		"User":                    "cofferd",
		"EnvironmentFile":         "/etc/coffer/cofferd.env",
		"Restart":                 "on-failure",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"StateDirectory":          "cofferd",
		"WorkingDirectory":        "/var/lib/cofferd",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"SystemCallArchitectures": "native",
		"SystemCallErrorNumber":   "EPERM",
		"MemoryDenyWriteExecute":  "yes",
		"RestrictSUIDSGID":        "yes",
		"ProtectKernelTunables":   "yes",
		"ProtectControlGroups":    "yes",
		"LockPersonality":         "yes",
		"UMask":                   "0077",
		"RestrictNamespaces":      "yes",
		"ProtectKernelModules":    "yes",
		"ProtectProc":             "invisible",
		"Environment":             "GOMEMLIMIT=200MiB",
		"LimitNOFILE":             "65536",
		"TimeoutStopSec":          "45",
		"StateDirectoryMode":      "0700",
		"ProtectHostname":         "yes",
		"ProtectClock":            "yes",
		"ProtectKernelLogs":       "yes",
		"RestrictRealtime":        "yes",
		"RemoveIPC":               "yes",
		"Group":                   "cofferd",
		"RestartSec":              "2s",
		"SystemCallFilter":        "~@privileged",
		"LoadCredential":          "tls-key:/etc/coffer/tls/key.pem",
	}
	for key, val := range want {
		sec := "Service"
		vals := u.get(sec, key)
		if !slices.Contains(vals, val) {
			t.Errorf("[%s] %s=%v, want %s among them", sec, key, vals, val)
		}
	}
	if filter := u.get("Service", "SystemCallFilter"); !slices.Contains(filter, "@system-service") {
		t.Errorf("SystemCallFilter=%v lacks @system-service", filter)
	}
	if u.get("Service", "User")[0] == "root" || len(u.get("Service", "DynamicUser")) > 0 {
		t.Error("cofferd must run as its own user")
	}
	if wb := u.last("Install", "WantedBy"); wb != "multi-user.target" {
		t.Errorf("WantedBy=%q, want multi-user.target", wb)
	}

	// ExecStart: serve with TLS from the credentials systemd loads.
	args := execStart(t, u)
	if args[0] != "/usr/local/bin/cofferd" || len(args) < 2 || args[1] != "serve" {
		t.Fatalf("ExecStart %v, want /usr/local/bin/cofferd serve ...", args)
	}
	creds := map[string]bool{}
	for _, lc := range u.get("Service", "LoadCredential") {
		id, path, ok := strings.Cut(lc, ":")
		if !ok || !strings.HasPrefix(path, "/etc/coffer/") {
			t.Errorf("LoadCredential=%s: want ID:/etc/coffer/...", lc)
		}
		creds["%d/"+id] = true
	}
	for _, f := range []string{"tls-cert", "tls-key"} {
		v := flagValue(args, f)
		if !creds[v] {
			t.Errorf("ExecStart --%s %q is not a loaded credential (%v)", f, v, creds)
		}
	}
	if slices.Contains(args, "--allow-plain-http") {
		t.Error("the unit must serve TLS, not --allow-plain-http")
	}
	if l := flagValue(args, "listen"); l == "" {
		t.Error("ExecStart has no --listen")
	}
	if m := flagValue(args, "metrics-listen"); !strings.HasPrefix(m, "127.0.0.1:") {
		t.Errorf("--metrics-listen %q: keep metrics on loopback in the unit", m)
	}
}

func TestSystemdUnitFlags(t *testing.T) {
	args := execStart(t, loadUnit(t))
	checkFlags(t, "deploy/cofferd.service ExecStart", []string{"serve"}, args[2:])
}

// The example environment file names what cofferd reads and holds no values
// for the secrets.
func TestEnvExample(t *testing.T) {
	text := readFile(t, "deploy/cofferd.env.example")
	vars := map[string]string{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("line %d: %q is not KEY=VALUE", i+1, line)
			continue
		}
		vars[k] = v
	}
	for _, k := range []string{"COFFER_STORE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		if _, ok := vars[k]; !ok {
			t.Errorf("deploy/cofferd.env.example does not set %s", k)
		}
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} {
		if vars[k] != "" {
			t.Errorf("deploy/cofferd.env.example holds a value for %s", k)
		}
	}
	if !strings.HasPrefix(vars["COFFER_STORE"], "s3://") {
		t.Errorf("COFFER_STORE=%q, want an s3:// example", vars["COFFER_STORE"])
	}
}

// systemd-analyze verify, when the machine has it. The binary path is
// swapped for a stub (cofferd is not installed here); any warning about the
// unit fails the test, not only a non-zero exit.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "cofferd")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := readFile(t, "deploy/cofferd.service")
	text = strings.Replace(text, "ExecStart=/usr/local/bin/cofferd ", "ExecStart="+stub+" ", 1)
	path := filepath.Join(dir, "cofferd.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", path).CombinedOutput()
	var problems []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "cofferd.service") || strings.Contains(line, dir) {
			problems = append(problems, line)
		}
	}
	if err != nil || len(problems) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
