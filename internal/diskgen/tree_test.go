package diskgen

import (
	"bytes"
	"crypto/sha256"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// treeDigest hashes every path, size and content under dir.
func treeDigest(t *testing.T, dir string) [32]byte {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Write([]byte(rel + "\x00"))
		h.Write(readFile(t, p))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func TestTree(t *testing.T) {
	const data = 8 << 20
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	st, err := Tree(a, data, 7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Tree(b, data, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := Tree(c, data, 8); err != nil {
		t.Fatal(err)
	}
	if treeDigest(t, a) != treeDigest(t, b) {
		t.Error("the same seed gave two trees")
	}
	if treeDigest(t, a) == treeDigest(t, c) {
		t.Error("another seed gave the same tree")
	}
	if st.Bytes < data*99/100 || st.Bytes > data {
		t.Errorf("tree holds %d bytes, want about %d", st.Bytes, data)
	}
	if len(st.Files) < 500 || st.Dirs < 10 {
		t.Errorf("%d files in %d directories, want a system disk's many small files", len(st.Files), st.Dirs)
	}
	byClass := map[string][]byte{}
	for _, f := range st.Files {
		p := filepath.Join(a, filepath.FromSlash(f.Path))
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != f.Size || !fi.ModTime().Equal(TreeTime) {
			t.Fatalf("%s: size %d mtime %v, want %d and %v", f.Path, fi.Size(), fi.ModTime(), f.Size, TreeTime)
		}
		byClass[f.Class] = append(byClass[f.Class], readFile(t, p)...)
	}
	for class, lim := range map[string][2]float64{"config": {2, 10}, "log": {2, 10}, "small": {2, 10}, "binary": {1, 1.5}} {
		if r := zstdRatio(t, byClass[class]); r < lim[0] || r > lim[1] {
			t.Errorf("%s files compress %.2fx, want within %v", class, r, lim)
		}
	}
	if _, err := Tree(t.TempDir(), 1000, 1); err == nil {
		t.Error("a tree of 1000 bytes was accepted")
	}
}

func TestTreeNight(t *testing.T) {
	root, staging := t.TempDir(), t.TempDir()
	st, err := Tree(root, 8<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	changes, err := TreeNight(st.Files, staging, 4)
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, c := range changes {
		key := c.Op + " " + c.File.Class
		if strings.Contains(c.File.Path, "/newpkg") {
			key = "new"
		}
		ops[key]++
		if c.Op == "remove" {
			if _, err := os.Stat(filepath.Join(staging, c.File.Path)); err == nil {
				t.Errorf("removed %s written to staging", c.File.Path)
			}
			continue
		}
		got := readFile(t, filepath.Join(staging, c.File.Path))
		if int64(len(got)) != c.File.Size {
			t.Errorf("%s: %d bytes, want %d", c.File.Path, len(got), c.File.Size)
		}
		old, err := os.ReadFile(filepath.Join(root, c.File.Path))
		switch {
		case key == "new":
			if err == nil {
				t.Errorf("new file %s is in night 1", c.File.Path)
			}
		case c.File.Class == "log":
			if !bytes.HasPrefix(got, old) || len(got) <= len(old) {
				t.Errorf("log %s did not grow by appending", c.File.Path)
			}
		case bytes.Equal(got, old) || err != nil:
			t.Errorf("%s rewritten with its old content (%v)", c.File.Path, err)
		}
	}
	if ops["write log"] == 0 || ops["write binary"] == 0 || ops["new"] == 0 {
		t.Errorf("changes %v: want grown logs, upgraded binaries and new files", ops)
	}
	again, _ := TreeNight(st.Files, t.TempDir(), 4)
	if len(again) != len(changes) {
		t.Errorf("the same seed planned %d then %d changes", len(changes), len(again))
	}
}
