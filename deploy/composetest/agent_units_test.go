package composetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The agent's units: coffer-agent.service (the long-running agent) and
// the alternative coffer-backup.service started by coffer-backup.timer.
var agentUnits = []string{"coffer-agent.service", "coffer-backup.service", "coffer-backup.timer"}

func loadAgentUnit(t *testing.T, name string) unit {
	t.Helper()
	u, err := parseUnit(readFile(t, "deploy/"+name))
	if err != nil {
		t.Fatalf("deploy/%s: %v", name, err)
	}
	return u
}

// agentHardening is what both agent services set: the cofferd unit's
// hardening, less what reading disks needs (PrivateDevices).
var agentHardening = map[string]string{
	"User": "coffer", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
	"ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes",
	"MemoryDenyWriteExecute": "yes", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "SystemCallArchitectures": "native",
	"SystemCallFilter": "~@privileged", "SystemCallErrorNumber": "EPERM", "CapabilityBoundingSet": "", "UMask": "0077",
	"StateDirectory": "coffer-agent", "CacheDirectory": "coffer-agent",
}

func TestAgentUnits(t *testing.T) {
	for _, name := range agentUnits[:2] {
		u := loadAgentUnit(t, name)
		for k, v := range agentHardening {
			if !slices.Contains(u.get("Service", k), v) {
				t.Errorf("%s: [Service] %s=%v, want %q among them", name, k, u.get("Service", k), v)
			}
		}
		env := strings.Join(u.get("Service", "Environment"), " ")
		for _, want := range []string{"XDG_STATE_HOME=/var/lib/coffer-agent", "XDG_CACHE_HOME=/var/cache/coffer-agent"} {
			if !strings.Contains(env, want) {
				t.Errorf("%s: Environment lacks %s (the run history and run marks must persist)", name, want)
			}
		}
		args := execStart(t, u)
		if args[0] != "/usr/local/bin/coffer" || flagValue(args, "config") != "/etc/coffer/coffer.yaml" {
			t.Errorf("%s: ExecStart %v, want /usr/local/bin/coffer --config /etc/coffer/coffer.yaml ...", name, args)
		}
		for _, a := range args {
			if strings.Contains(strings.ToLower(a), "password") && !strings.HasSuffix(a, "-file") {
				t.Errorf("%s: ExecStart passes a secret in argv: %s", name, a)
			}
		}
	}
	agent := loadAgentUnit(t, "coffer-agent.service")
	if got := execStart(t, agent); got[len(got)-1] != "agent" {
		t.Errorf("coffer-agent.service runs %v, want coffer ... agent", got)
	}
	for k, v := range map[string]string{"Type": "exec", "Restart": "on-failure", "KillSignal": "SIGTERM", "RestartPreventExitStatus": "2 10 12"} {
		if agent.last("Service", k) != v {
			t.Errorf("coffer-agent.service: %s=%q, want %q", k, agent.last("Service", k), v)
		}
	}
	backup := loadAgentUnit(t, "coffer-backup.service")
	if flagValue(execStart(t, backup), "password-file") == "" {
		t.Error("coffer-backup.service: coffer backup needs --password-file (it runs without a terminal)")
	}
	if backup.last("Service", "Type") != "oneshot" || !slices.Contains(execStart(t, backup), "backup") || len(backup.get("Install", "WantedBy")) > 0 {
		t.Errorf("coffer-backup.service: want Type=oneshot running coffer backup, started only by its timer")
	}
	timer := loadAgentUnit(t, "coffer-backup.timer")
	for k, v := range map[string]string{"Persistent": "true", "Unit": "coffer-backup.service", "OnCalendar": "*-*-* 01:30:00"} {
		if timer.last("Timer", k) != v {
			t.Errorf("coffer-backup.timer: %s=%q, want %q", k, timer.last("Timer", k), v)
		}
	}
	if timer.last("Timer", "RandomizedDelaySec") == "" || timer.last("Install", "WantedBy") != "timers.target" {
		t.Error("coffer-backup.timer: want RandomizedDelaySec and WantedBy=timers.target")
	}
	if !slices.Contains(timer.get("Unit", "Conflicts"), "coffer-agent.service") {
		t.Error("coffer-backup.timer must conflict with coffer-agent.service: one of the two keeps the schedule")
	}
}

// systemd-analyze verify of the three units together (the timer names the
// service), with the coffer binary swapped for a stub; any line about them
// fails the test.
func TestAgentUnitsAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("COFFER_REQUIRE_JUDGES") == "1" {
			t.Fatal("systemd-analyze is not installed (COFFER_REQUIRE_JUDGES=1): apt-get install systemd")
		}
		t.Skip("systemd-analyze is not installed (apt-get install systemd)")
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "coffer")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, name := range agentUnits {
		text := strings.Replace(readFile(t, "deploy/"+name), "ExecStart=/usr/local/bin/coffer ", "ExecStart="+stub+" ", 1)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	var problems []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "coffer-") || strings.Contains(line, dir) {
			problems = append(problems, line)
		}
	}
	if err != nil || len(problems) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
