package integration

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/diskgen"
)

// objects lists the repository's files under prefix, largest first.
func objects(t *testing.T, repo, prefix string) []string {
	t.Helper()
	var out []string
	sizes := map[string]int64{}
	err := filepath.WalkDir(filepath.Join(repo, prefix), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repo, p)
		out = append(out, rel)
		sizes[rel] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(out, func(i, j int) bool { return sizes[out[i]] > sizes[out[j]] })
	if len(out) == 0 {
		t.Fatalf("no objects under %s", prefix)
	}
	return out
}

func flipByte(t *testing.T, path string, fromEnd int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := int64(len(b)) / 2
	if fromEnd > 0 {
		i = int64(len(b)) - fromEnd
	}
	b[i] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCorruptionIsReported flips one byte in each kind of object and checks
// that check and restore fail with a message naming the object, and that
// nothing panics.
func TestCorruptionIsReported(t *testing.T) {
	base := newAgent(t)
	clean := filepath.Join(base.dir, "clean")
	base.ok("init", "--repo", clean)
	img := filepath.Join(base.dir, "d.img")
	if err := diskgen.Generate(img, 96<<20, 7, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	base.ok("backup", "--image", img, "--name", "vm")

	cases := []struct {
		name      string
		prefix    string
		fromEnd   int64 // 0: flip the middle byte
		readData  bool  // only check --read-data can see it
		exitOpen  int   // expected exit when the repository cannot even be opened (0: it opens)
		restoreOK bool  // restore may still succeed (damage in a part it does not need)
	}{
		{name: "pack data", prefix: "data", readData: true},
		// Restore reads blobs where the index says and verifies each one, so
		// a damaged header costs nothing it needs: it restores (verified),
		// and check reports the damage.
		{name: "pack header", prefix: "data", fromEnd: 20, restoreOK: true},
		// A damaged index file is skipped with a warning naming it; its packs
		// are found again from their headers, so restore still succeeds.
		{name: "index", prefix: "index", restoreOK: true},
		{name: "key slot", prefix: "keys", exitOpen: 12},
		{name: "snapshot", prefix: "snapshots"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAgent(t)
			repo := filepath.Join(a.dir, "repo")
			copyDir(t, clean, repo)
			a.ok("init", "--repo", filepath.Join(a.dir, "unused")) // writes a config file; then point at the copy
			obj := objects(t, repo, tc.prefix)[0]
			flipByte(t, filepath.Join(repo, obj), tc.fromEnd)
			name := filepath.ToSlash(obj)

			args := []string{"check", "--repo", repo}
			if tc.readData {
				args = append(args, "--read-data")
			}
			r := a.run(args...)
			out := r.stdout + r.stderr
			if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
				t.Fatalf("check panicked:\n%s", out)
			}
			wantCode := 1
			if tc.exitOpen != 0 {
				wantCode = tc.exitOpen
			}
			if r.code != wantCode || !strings.Contains(out, name) {
				t.Errorf("check exited %d (want %d) without naming %s:\n%s", r.code, wantCode, name, out)
			}

			r = a.run("restore", "latest", "--repo", repo, "--to", filepath.Join(a.dir, "out.img"))
			out = r.stdout + r.stderr
			if strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
				t.Fatalf("restore panicked:\n%s", out)
			}
			if tc.restoreOK {
				if tc.prefix == "index" && !strings.Contains(out, name) {
					t.Errorf("restore did not warn about %s:\n%s", name, out)
				}
				if r.code != 0 {
					t.Errorf("restore failed (%d) although the data it needs is intact:\n%s", r.code, out)
				}
				sameFile(t, img, filepath.Join(a.dir, "out.img"))
				return
			}
			if r.code == 0 {
				t.Fatalf("restore succeeded from a repository with a damaged %s", tc.name)
			}
			if !strings.Contains(out, name) {
				t.Errorf("restore error does not name %s:\n%s", name, out)
			}
		})
	}
}
