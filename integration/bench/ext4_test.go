package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/diskgen"
)

// needE2fs skips without e2fsprogs, except in CI, where they must be there.
func needE2fs(t *testing.T) {
	t.Helper()
	for _, name := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		if _, err := e2fsTool(name); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
	}
}

// catExt4 returns a file's content inside an ext4 image, through debugfs.
func catExt4(t *testing.T, img, p string) ([]byte, bool) {
	t.Helper()
	debugfs, _ := e2fsTool("debugfs")
	out, err := exec.Command(debugfs, "-R", "cat /"+p, img).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", p, err)
	}
	stat, _ := exec.Command(debugfs, "-R", "stat /"+p, img).CombinedOutput()
	return out, !strings.Contains(string(stat), "File not found")
}

func TestBuildExt4(t *testing.T) {
	needE2fs(t)
	dir := t.TempDir()
	tree, staging := filepath.Join(dir, "tree"), filepath.Join(dir, "staging")
	n1, n2 := filepath.Join(dir, "n1.img"), filepath.Join(dir, "n2.img")
	rd, err := buildExt4(context.Background(), tree, staging, n1, n2, 64<<20, 4<<20, 9)
	if err != nil {
		t.Fatal(err)
	}
	if fileSize(n1) != 64<<20 || fileSize(n2) != 64<<20 {
		t.Errorf("image sizes %d and %d, want %d", fileSize(n1), fileSize(n2), 64<<20)
	}
	if rd.Night1Allocated >= 64<<20/2 || rd.Night1Allocated < rd.DataBytes {
		t.Errorf("night 1 allocates %d bytes for %d of data: want a sparse, mostly empty disk", rd.Night1Allocated, rd.DataBytes)
	}
	if rd.ChangedFiles == 0 || rd.RemovedFiles == 0 || rd.WrittenBytes == 0 {
		t.Errorf("night 2: %+v, want written and removed files", rd)
	}

	// Night 1 holds the tree; night 2 holds every change, and nothing else
	// changed.
	files, _ := diskgen.PlanTree(4<<20, 9)
	changes, err := diskgen.TreeNight(files, filepath.Join(dir, "again"), 10)
	if err != nil {
		t.Fatal(err)
	}
	changed := map[string]bool{}
	for _, c := range changes {
		changed[c.File.Path] = true
		got, exists := catExt4(t, n2, c.File.Path)
		if c.Op == "remove" {
			if exists {
				t.Errorf("night 2 still holds removed %s", c.File.Path)
			}
			continue
		}
		want, _ := os.ReadFile(filepath.Join(dir, "again", c.File.Path))
		if string(got) != string(want) {
			t.Errorf("night 2's %s: %d bytes, want its new %d", c.File.Path, len(got), len(want))
		}
	}
	checked := 0
	for _, f := range files {
		if changed[f.Path] || checked >= 20 {
			continue
		}
		checked++
		want, _ := os.ReadFile(filepath.Join(tree, f.Path))
		for _, img := range []string{n1, n2} {
			if got, _ := catExt4(t, img, f.Path); string(got) != string(want) {
				t.Errorf("%s in %s: %d bytes, want the tree's %d", f.Path, filepath.Base(img), len(got), len(want))
			}
		}
	}
}

func TestDebugfsScript(t *testing.T) {
	file := func(p string) diskgen.TreeFile { return diskgen.TreeFile{Path: p} }
	changes := []diskgen.TreeChange{
		{File: file("var/log/a/x.log"), Op: "write"},
		{File: file("var/log/a/y.log"), Op: "write"},
		{File: file("usr/share/doc/d/z.txt"), Op: "remove"},
		{File: file("usr/share/doc/new0/n1.txt"), Op: "write"},
		{File: file("usr/share/doc/new0/n2.txt"), Op: "write"},
	}
	known := map[string]bool{"var/log/a": true, "var/log/a/x.log": true, "var/log/a/y.log": true,
		"usr/share/doc/d": true, "usr/share/doc/d/z.txt": true}
	got := debugfsScript(changes, func(p string) bool { return known[p] })
	want := `cd /var/log/a
rm x.log
write var/log/a/x.log x.log
rm y.log
write var/log/a/y.log y.log
cd /usr/share/doc/d
rm z.txt
mkdir /usr/share/doc/new0
cd /usr/share/doc/new0
write usr/share/doc/new0/n1.txt n1.txt
write usr/share/doc/new0/n2.txt n2.txt
`
	if got != want {
		t.Errorf("script:\n%s\nwant:\n%s", got, want)
	}
}

func TestRunE2fsReportsStderr(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "debugfs")
	// debugfs exits 0 after a failed command and says so on stderr.
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho 'debugfs 1.47.0 (5-Feb-2023)' >&2\necho 'rm: File not found by ext2_lookup' >&2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := runE2fs(context.Background(), "", prog, "-w", "img")
	if err == nil || !strings.Contains(err.Error(), "File not found") {
		t.Errorf("err = %v, want the message debugfs printed", err)
	}
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho 'debugfs 1.47.0 (5-Feb-2023)' >&2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := runE2fs(context.Background(), "", prog, "-w", "img"); err != nil {
		t.Errorf("the banner alone failed: %v", err)
	}
}

func ext4Session(s *Session) *Session {
	s.Scenario = scenarioExt4
	return s
}

func TestRealDiskChecks(t *testing.T) {
	r := &Results{
		Config:   config{Tools: allTools, Targets: []string{targetLocal, targetS3}, Scenarios: allScenarios},
		RealDisk: &RealDisk{Size: 4 << 30, Files: 1000, Night2Allocated: 1000},
		Sessions: []*Session{
			fakeSession(toolCoffer, targetLocal, 250, 150, 300, 1<<30, 10<<20, 50<<10),
			fakeSession(toolRestic, targetLocal, 100, 100, 100, 1<<30, 40<<20, 100<<10),
			ext4Session(fakeSession(toolCoffer, targetLocal, 500, 400, 250, 1<<28, 1<<20, 50<<10)),
			ext4Session(fakeSession(toolRestic, targetLocal, 200, 200, 100, 1<<28, 4<<20, 100<<10)),
			ext4Session(fakeSession(toolCoffer, targetS3, 500, 400, 150, 1<<28, 1<<20, 50<<10)),
			ext4Session(fakeSession(toolRestic, targetS3, 200, 200, 100, 1<<28, 4<<20, 100<<10)),
		},
	}
	r.Sessions[4].Steps[2].RestoredAlloc = 2000 // not sparse
	r.Checks = checks(r)
	status := map[string]string{}
	for _, c := range r.Checks {
		status[c.Target+" "+c.Name] = c.Status
	}
	for name, want := range map[string]string{
		"local real ext4 disk: restore throughput vs restic --sparse": "PASS", // 2.5x
		"s3 real ext4 disk: restore throughput vs restic --sparse":    "FAIL", // 1.5x
		"local real ext4 disk: restored image sparse":                 "PASS",
		"s3 real ext4 disk: restored image sparse":                    "FAIL",
		"local real ext4 disk: full backup throughput vs restic":      "info",
		"local restore throughput vs restic --sparse":                 "PASS", // the mix's: 3x
	} {
		if status[name] != want {
			t.Errorf("%s: %q, want %s", name, status[name], want)
		}
	}
	var out bytes.Buffer
	report(&out, r)
	text := out.String()
	for _, re := range []string{
		`(?m)^== Coffer benchmark: seed 0; the reference mix not run$`, // no mix images in r
		`(?m)^   real ext4 disk: 4\.0 GiB, 1000 files`,
		`(?m)^Real ext4 disk: Restore \(night 2\), target s3$`,
		`(?m)^Restore \(night 2\), target s3$`,
		`coffer vs restic \[local\]: .*restore throughput 3\.00x`,
		`coffer vs restic \[s3, ext4\]: .*restore throughput 1\.50x`,
		`(?m)^FAIL +s3 +real ext4 disk: restore throughput vs restic --sparse +1\.50 +>= 2x`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("report lacks %s:\n%s", re, text)
		}
	}
}

// A run killed midway leaves its tree in the work directory; the next run
// in the same directory must not put those files on its disk.
func TestMakeExt4ClearsLeftovers(t *testing.T) {
	needE2fs(t)
	dir := t.TempDir()
	for _, d := range []string{"images/ext4-tree", "live"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "images/ext4-tree/stale.txt"), []byte("old run"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &bench{cfg: config{Workdir: dir, Ext4Size: 64 << 20, Ext4Data: 4 << 20, Seed: 2}, out: io.Discard, res: &Results{}}
	sc, err := b.makeExt4(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, exists := catExt4(t, sc.night1, "stale.txt"); exists {
		t.Error("a file left by an earlier run is on the new disk")
	}
	if b.res.RealDisk == nil || b.res.RealDisk.Files == 0 {
		t.Errorf("real disk not recorded: %+v", b.res.RealDisk)
	}
	for _, d := range []string{"ext4-tree", "ext4-staging"} {
		if _, err := os.Stat(filepath.Join(dir, "images", d)); err == nil {
			t.Errorf("%s left behind", d)
		}
	}
}
