package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
)

// A restore ended by SIGTERM (as systemd or kill does) exits 130 and
// leaves neither the output nor its temporary file; the same command run
// again succeeds.
func TestRestoreSIGTERMLeavesNothing(t *testing.T) {
	a := newAgent(t)
	a.ok("init", "--repo", filepath.Join(a.dir, "repo"))
	img := filepath.Join(a.dir, "vm.img")
	if err := diskgen.Generate(img, 128<<20, 3, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	a.ok("--quiet", "backup", "--image", img, "--name", "vm")

	outDir := filepath.Join(a.dir, "out")
	if err := os.Mkdir(outDir, 0o700); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(outDir, "vm.img")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := a.cmd(ctx, "restore", "latest", "--name", "vm", "--to", out, "--read-back", "--workers", "1")
	done := make(chan result, 1)
	go func() {
		r, err := runCmd(cmd)
		if err != nil {
			r.code, r.stderr = -2, err.Error()
		}
		done <- r
	}()
	// Signal once the restore is writing into its temporary file.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(2 * time.Millisecond) {
		ents, _ := os.ReadDir(outDir)
		if len(ents) > 0 && strings.Contains(ents[0].Name(), ".coffer-restore-") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the restore made no temporary file within a minute")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.code == 0 {
		t.Skip("the restore finished before SIGTERM arrived")
	}
	if r.code != 130 || !strings.Contains(r.stderr, "interrupted") {
		t.Fatalf("restore after SIGTERM: exit %d\n%s", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(outDir); len(ents) != 0 {
		t.Fatalf("an interrupted restore left %v", ents)
	}
	a.ok("--quiet", "restore", "latest", "--name", "vm", "--to", out)
	sameFile(t, img, out)
}

// A 0-byte image and /dev/null are not "backed up": exit 1 with a message
// that names the path, and no snapshot.
func TestBackupOfNothingFails(t *testing.T) {
	a := newAgent(t)
	a.ok("init", "--repo", filepath.Join(a.dir, "repo"))
	empty := filepath.Join(a.dir, "empty.img")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{empty: "is empty (0 bytes)", "/dev/null": "character device"} {
		if r := a.run("backup", "--image", path, "--name", "vm"); r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, path) {
			t.Errorf("backup of %s: exit %d\n%s", path, r.code, r.stderr)
		}
	}
	if r := a.ok("snapshots", "--json"); strings.TrimSpace(r.stdout) != "[]" && strings.TrimSpace(r.stdout) != "null" {
		t.Errorf("snapshots after failed backups: %s", r.stdout)
	}
}
