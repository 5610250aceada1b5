package source_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/uploader/source"
)

// An empty file and a character device (/dev/null) are refused with a
// SourceError that says what is wrong, not backed up as an empty disk.
func TestOpenImageRefusesNothing(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.img")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{empty: "is empty (0 bytes)", "/dev/null": "character device"} {
		src, err := source.OpenImage(path)
		var se *source.SourceError
		if !errors.As(err, &se) || se.Path != path || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("OpenImage(%s) = %v, %v; want a SourceError saying %q", path, src, err, want)
		}
	}
}
