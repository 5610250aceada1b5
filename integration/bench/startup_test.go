package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// shDriver is a tool made of shell commands over a directory "repository".
type shDriver struct {
	repo    string
	corrupt bool // the restore flips the image's first byte
}

func (shDriver) env(*bench, *Session, string) []string     { return nil }
func (shDriver) setup(*bench, *Session, string) [][]string { return nil }

func (d shDriver) backup(_ *Session, _, path, name string) []string {
	return []string{"/bin/sh", "-c", `cp "$1" "$2/$3" && echo '{"id":"'$3'"}'`, "sh", path, d.repo, name}
}

func (shDriver) parseBackup(out []byte) (map[string]any, string, error) {
	m, ok := lastJSON(out, func(m map[string]any) bool { return m["id"] != nil })
	if !ok {
		return nil, "", errors.New("no id")
	}
	return m, m["id"].(string), nil
}

func (d shDriver) snapshots(*Session, string) []string { return []string{"/bin/ls", d.repo} }

func (d shDriver) restore(_ *Session, _ string, ref backupRef, outDir string) ([]string, string) {
	out := filepath.Join(outDir, "disk.img")
	script := `cp "$1" "$2"`
	if d.corrupt {
		script += ` && printf 'X' | dd of="$2" conv=notrunc status=none`
	}
	return []string{"/bin/sh", "-c", script, "sh", filepath.Join(d.repo, ref.snapshot), out}, out
}

func startupBench(t *testing.T) (*bench, *Session) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"live", "logs", "run", "repo"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b := &bench{cfg: config{Workdir: dir, StartupRuns: 3, Seed: 1, StepTimeout: 30e9}, out: io.Discard, res: &Results{}}
	s := &Session{Tool: toolCoffer, Target: targetLocal, Scenario: scenarioMix, dir: filepath.Join(dir, "run"), env: cleanEnv(dir)}
	return b, s
}

func TestStartup(t *testing.T) {
	b, s := startupBench(t)
	b.startup(context.Background(), s, shDriver{repo: filepath.Join(b.cfg.Workdir, "repo")}, "sh")
	if len(s.Startup) != len(startupCommands) {
		t.Fatalf("%d start-up rows, want %d: %+v", len(s.Startup), len(startupCommands), s.Startup)
	}
	for i, st := range s.Startup {
		if st.Name != startupCommands[i] || st.Error != "" || st.WallSeconds <= 0 || st.MaxRSSKiB <= 0 || len(st.Runs) != 3 {
			t.Errorf("row %d: %+v", i, st)
		}
	}
	if v := s.Startup[2].Verified; v == nil || !*v {
		t.Errorf("tiny restore not verified: %+v", s.Startup[2])
	}
	if len(s.Steps) != 0 {
		t.Errorf("start-up rows leaked into the session's steps: %+v", s.Steps)
	}
	if _, err := os.Stat(filepath.Join(b.cfg.Workdir, "live", "tiny-coffer-local.img")); err == nil {
		t.Error("the tiny image was left behind")
	}
}

func TestStartupRestoreMismatch(t *testing.T) {
	b, s := startupBench(t)
	b.cfg.StartupRuns = 1
	b.startup(context.Background(), s, shDriver{repo: filepath.Join(b.cfg.Workdir, "repo"), corrupt: true}, "sh")
	var restore *Step
	for _, st := range s.Startup {
		if st.Name == startupRestore {
			restore = st
		}
	}
	if restore == nil || !strings.Contains(restore.Error, "differs from the tiny image") ||
		restore.Verified == nil || *restore.Verified {
		t.Errorf("a wrong tiny restore was not caught: %+v", restore)
	}
	if s.startupStep(startupRestore) != nil {
		t.Error("a failed row is reported as a figure")
	}
}

func TestMedianStep(t *testing.T) {
	runs := []*Step{{WallSeconds: 3}, {WallSeconds: 1, Error: "x"}, {WallSeconds: 2}, {WallSeconds: 9}}
	if st := medianStep(runs); st.WallSeconds != 3 || len(st.Runs) != 4 {
		t.Errorf("median %+v, want the 3 s run of the three that worked, with all 4 runs", st)
	}
	if st := medianStep([]*Step{{Error: "a"}, {Error: "b"}}); st.Error != "a" {
		t.Errorf("all failed: %+v, want the first failure", st)
	}
	if medianStep(nil) != nil {
		t.Error("no runs gave a step")
	}
}

// withStartup adds start-up rows to a session.
func withStartup(s *Session, list, backup, restore float64) *Session {
	for i, w := range []float64{list, backup, restore} {
		s.Startup = append(s.Startup, &Step{Name: startupCommands[i], WallSeconds: w, CPUSeconds: w / 2, MaxRSSKiB: 20 << 10})
	}
	return s
}

func TestStartupReport(t *testing.T) {
	r := &Results{
		Config: config{Tools: allTools, Targets: []string{targetLocal, targetS3}, Scenarios: allScenarios, StartupRuns: 3},
		Sessions: []*Session{
			withStartup(fakeSession(toolCoffer, targetLocal, 250, 150, 300, 1<<30, 10<<20, 50<<10), 0.2, 0.5, 0.25),
			withStartup(fakeSession(toolRestic, targetLocal, 100, 100, 100, 1<<30, 40<<20, 100<<10), 0.4, 1.0, 1.0),
			{Tool: toolKopia, Target: targetLocal, Scenario: scenarioMix, Error: "missing"},
			fakeSession(toolCoffer, targetS3, 250, 150, 300, 1<<30, 10<<20, 50<<10),
			fakeSession(toolRestic, targetS3, 100, 100, 100, 1<<30, 40<<20, 100<<10),
		},
	}
	coffer := r.Sessions[0]
	coffer.Startup[1].Error = "coffer backup: exit status 1: disk full"
	coffer.Startup[0].CPUSeconds = 99 // start-up rows stay out of the session's CPU ratio
	r.Checks = checks(r)
	rt := r.Ratios[0]
	if rt.Target != targetLocal || rt.Peer != toolRestic || rt.StartupWall[startupRestore] != 0.25 ||
		rt.StartupWall[startupSnapshots] != 0.5 || len(rt.StartupWall) != 2 || rt.CPU != 1 {
		t.Fatalf("ratios: %+v", rt)
	}
	if len(r.Ratios) != 2 || r.Ratios[1].StartupWall != nil {
		t.Errorf("s3 ratios carry start-up figures it never measured: %+v", r.Ratios)
	}

	var out bytes.Buffer
	report(&out, r)
	text := out.String()
	for _, re := range []string{
		`(?m)^Start-up cost, target local \(mix repository after its second night; median of 3`,
		`(?m)^ *tiny restore +coffer +0\.25 +0\.12 +20 +0\.25x *$`,
		`(?m)^ *snapshots +restic +0\.40 +0\.20 +20 +- *$`,
		`(?m)^ *snapshots +kopia +not run *$`,
		`(?m)^ *tiny backup +coffer +failed: coffer backup: exit status 1: disk full *$`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("report lacks %s:\n%s", re, text)
		}
	}
	if strings.Contains(text, "Start-up cost, target s3") {
		t.Error("a start-up table for a target that measured none")
	}
}
