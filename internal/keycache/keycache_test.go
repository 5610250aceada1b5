package keycache

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const id = "0123456789abcdef0123456789abcdef"

func TestSaveLoadForget(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repos")
	key := bytes.Repeat([]byte{0xa5}, 32)
	e := Entry{Repository: id, Slot: "keys/" + strings.Repeat("b", 64), Key: key, Saved: time.Now().UTC()}
	if err := Save(dir, e); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, id+".json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("file: %v %v", fi, err)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v", di.Mode().Perm())
	}
	got, err := Load(dir, id)
	if err != nil || got.Slot != e.Slot || !bytes.Equal(got.Key, key) || got.Version != Version {
		t.Fatalf("Load: %v, %v", got, err)
	}
	mk, err := got.MasterKey()
	if err != nil || mk == nil {
		t.Fatalf("MasterKey: %v", err)
	}
	for _, s := range []string{got.String(), fmt.Sprintf("%v %+v %#v", got, *got, *got)} {
		if strings.Contains(s, hex.EncodeToString(key)) || strings.Contains(s, "a5a5") || strings.Contains(s, "paWl") {
			t.Fatalf("printing an entry shows the key: %s", s)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d files in the directory, want 1 (no temporary left)", len(ents))
	}
	removed, err := Forget(dir, id)
	if err != nil || !removed {
		t.Fatalf("Forget: %v %v", removed, err)
	}
	if _, err := Load(dir, id); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load after Forget: %v", err)
	}
	if removed, err := Forget(dir, id); err != nil || removed {
		t.Fatalf("second Forget: %v %v", removed, err)
	}
}

func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, id+".json")
	write := func(s string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	other := strings.Repeat("f", 32)
	cases := map[string]struct {
		content string
		mode    os.FileMode
		why     string
	}{
		"readable by others": {`{"version":1,"repository":"` + id + `","slot":"keys/x"}`, 0o644, "open to other users"},
		"not JSON":           {`{`, 0o600, "not valid JSON"},
		"other repository":   {`{"version":1,"repository":"` + other + `","slot":"keys/x"}`, 0o600, "is for repository"},
		"version 2":          {`{"version":2,"repository":"` + id + `"}`, 0o600, "version 2"},
		"short key":          {`{"version":1,"repository":"` + id + `","master_key":"AAAA"}`, 0o600, "3 bytes"},
	}
	for name, c := range cases {
		write(c.content, c.mode)
		if _, err := Load(dir, id); err == nil || !strings.Contains(err.Error(), c.why) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v; want an error naming %s and saying %q", name, err, p, c.why)
		}
	}
	for _, bad := range []string{"../x", "0123456789ABCDEF0123456789ABCDEF", "", strings.Repeat("0", 31), "../" + id[:29]} {
		if _, err := Load(dir, bad); err == nil || errors.Is(err, os.ErrNotExist) {
			t.Errorf("repository ID %q: %v", bad, err)
		}
		if err := Save(dir, Entry{Repository: bad}); err == nil {
			t.Errorf("Save with repository ID %q succeeded", bad)
		}
	}
}
