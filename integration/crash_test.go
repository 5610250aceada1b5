package integration

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
)

// dirBytes sums the sizes of the files below dir/sub, skipping temporary
// files a killed writer left.
func dirBytes(t *testing.T, dir, sub string) (int64, int) {
	t.Helper()
	var total int64
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, sub), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".tmp-") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += info.Size()
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total, n
}

// TestKill9AtAnyPoint kills a backup with SIGKILL at several points and
// checks that the repository is consistent, that the next backup completes
// without uploading the packs already stored again, and that the result
// restores byte-identical.
func TestKill9AtAnyPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	base := newAgent(t)
	img := filepath.Join(base.dir, "d.img")
	if err := diskgen.Generate(img, 512<<20, 11, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	// A clean run gives the duration to aim the kills at and the bytes a
	// complete backup stores.
	cleanRepo := filepath.Join(base.dir, "clean")
	base.ok("init", "--repo", cleanRepo)
	start := time.Now()
	base.ok("backup", "--image", img, "--name", "vm")
	d := time.Since(start)
	cleanBytes, _ := dirBytes(t, cleanRepo, "data")

	for _, frac := range []float64{0.05, 0.3, 0.55, 0.8, 0.95} {
		t.Run(fmt.Sprintf("at%.0fpercent", frac*100), func(t *testing.T) {
			a := newAgent(t)
			repo := filepath.Join(a.dir, "repo")
			a.ok("init", "--repo", repo)
			cmd := a.cmd(context.Background(), "backup", "--image", img, "--name", "vm")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(frac * float64(d)))
			_ = cmd.Process.Signal(syscall.SIGKILL)
			werr := cmd.Wait()
			killed := werr != nil
			storedBefore, packsBefore := dirBytes(t, repo, "data")
			t.Logf("killed=%v after %.0f%% of a clean run: %d packs (%d bytes) stored", killed, frac*100, packsBefore, storedBefore)

			// The repository checks clean (orphan packs are only warnings).
			if r := a.run("check"); r.code != 0 {
				t.Fatalf("check after kill -9 exited %d:\n%s%s", r.code, r.stdout, r.stderr)
			}
			// The next run completes and reuses what was stored.
			s := summary(t, a.ok("backup", "--image", img, "--name", "vm", "--json"))
			again := num(t, s, "bytes_stored_new")
			if killed && storedBefore+again > cleanBytes+cleanBytes/50+(1<<20) {
				t.Errorf("stored %d before the kill and %d after: more than a clean run's %d, so packs were uploaded again", storedBefore, again, cleanBytes)
			}
			out := filepath.Join(a.dir, "out.img")
			a.ok("restore", "latest", "--name", "vm", "--to", out)
			sameFile(t, img, out)
			if r := a.run("check", "--read-data"); r.code != 0 || strings.Contains(r.stdout, "warning") {
				t.Errorf("check --read-data after the resumed backup exited %d:\n%s%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}
