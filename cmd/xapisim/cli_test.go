package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
)

func xs(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func mustXS(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := xs(t, args...)
	if code != 0 {
		t.Fatalf("xapisim %v: exit %d: %s", args, code, errs)
	}
	return out
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustXS(t, "init", "--state", state, "--password-file", pw)
	if _, errs, code := xs(t, "init", "--state", state, "--password-file", pw); code == 0 || !strings.Contains(errs, "already initialised") {
		t.Fatalf("second init: %d %s", code, errs)
	}
	if strings.Contains(string(mustRead(t, filepath.Join(state, "state.json"))), "hunter2") {
		t.Fatal("state.json holds the password")
	}
	uuid := strings.TrimSpace(mustXS(t, "vm", "create", "--state", state, "db", "--disk", "1M", "--disk", "512K", "--cd"))
	mustXS(t, "disk", "cbt", "--state", state, "db", "0", "on")
	mustXS(t, "disk", "write", "--state", state, uuid, "0", "--random-blocks", "50", "--seed", "9")
	mustXS(t, "disk", "write", "--state", state, "db", "1", "--block", "3", "--block", "5")
	mustXS(t, "disk", "resize", "--state", state, "db", "1", "1M")
	img := filepath.Join(dir, "d1.img")
	mustXS(t, "disk", "export", "--state", state, "db", "1", img)
	b := mustRead(t, img)
	if len(b) != 1<<20 || allZero(b[3*65536:4*65536]) || !allZero(b[4*65536:5*65536]) || allZero(b[5*65536:6*65536]) {
		t.Fatalf("exported disk 1 (%d bytes) does not hold blocks 3 and 5 only", len(b))
	}
	mustXS(t, "disk", "import", "--state", state, "db", "0", img)
	again := filepath.Join(dir, "d0.img")
	mustXS(t, "disk", "export", "--state", state, "db", "0", again)
	if !bytes.Equal(mustRead(t, again), b) {
		t.Fatal("import then export does not give the image back")
	}
	newUUID := strings.TrimSpace(mustXS(t, "disk", "migrate", "--state", state, "db", "0"))
	mustXS(t, "switch", "--state", state, "nbd-drop-every=4")
	var l xapisim.Listing
	if err := json.Unmarshal([]byte(mustXS(t, "vm", "list", "--state", state, "--json")), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.VMs) != 1 || l.VMs[0].UUID != uuid || len(l.VMs[0].VBDs) != 3 || l.Switches["nbd-drop-every"] != "4" {
		t.Fatalf("listing %+v", l)
	}
	found := false
	for _, v := range l.VDIs {
		found = found || (v.UUID == newUUID && v.CBTEnabled)
	}
	if !found {
		t.Fatal("the migrated VDI is not listed with CBT on")
	}
	mustXS(t, "switch", "--state", state, "--off", "nbd-drop-every")
	for _, bad := range [][]string{
		{"vm", "create", "--state", state, "x", "--disk", "12Q"},
		{"disk", "write", "--state", state, "db", "0", "--seed", "1"},
		{"disk", "write", "--state", state, "db", "0", "--block", "99"},
		{"disk", "cbt", "--state", state, "db", "0", "maybe"},
		{"disk", "export", "--state", state, "nope", "0", img},
		{"disk", "resize", "--state", state, "db", "1", "64K"},
		{"switch", "--state", state, "bogus"},
		{"vm", "list", "--state", filepath.Join(dir, "none")},
		{"serve", "--state", state, "--listen", "0.0.0.0:0", "--plain"},
	} {
		if _, errs, code := xs(t, bad...); code == 0 || errs == "" {
			t.Errorf("xapisim %v succeeded", bad)
		}
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("pw"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustXS(t, "init", "--state", state, "--password-file", pw)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		var out, errb bytes.Buffer
		done <- run(ctx, []string{"serve", "--state", state, "--listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0"}, &out, &errb)
	}()
	for i := 0; ; i++ {
		if info, err := xapisim.ReadServeInfo(state); err == nil {
			if !strings.HasPrefix(info.URL, "https://127.0.0.1:") || info.NBD == "" || len(info.Fingerprint) != 64 {
				t.Fatalf("serve.json %+v", info)
			}
			break
		}
		if i == 500 {
			t.Fatal("serve.json never appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(state, "serve.json")); err == nil {
		t.Fatal("serve.json outlived serve")
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func allZero(b []byte) bool {
	return len(bytes.Trim(b, "\x00")) == 0
}
