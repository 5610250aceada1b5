package fsx

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestRenameNoReplace moves a file to a free name and refuses a taken one,
// leaving both files as they were.
func TestRenameNoReplace(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	for p, body := range map[string]string{a: "new", b: "old"} {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := RenameNoReplace(a, b); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("onto an existing file: %v, want fs.ErrExist", err)
	}
	if got, _ := os.ReadFile(b); string(got) != "old" {
		t.Fatalf("the existing file changed to %q", got)
	}
	if err := RenameNoReplace(a, c); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(c); string(got) != "new" {
		t.Fatalf("moved file holds %q", got)
	}
	if _, err := os.Stat(a); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the source is still there: %v", err)
	}
	if err := SyncDir(dir); err != nil {
		t.Fatal(err)
	}
}
