package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listDir returns every file under dir (relative names).
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, rel)
		}
		return nil
	})
	return names
}

// Only init (and serve --init) makes a vault; every other command exits 10
// naming the path, and writes nothing.
func TestNoVaultExits10(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "mistyped")
	empty := t.TempDir()
	idFile := filepath.Join(t.TempDir(), "escrow.key")
	cmds := [][]string{
		{"tenant", "list"}, {"tenant", "show", "acme"}, {"tenant", "create", "acme"}, {"tenant", "token", "acme"},
		{"tenant", "set-quota", "acme", "1GiB"}, {"tenant", "suspend", "acme"}, {"tenant", "resume", "acme"},
		{"tenant", "credentials", "acme"}, {"tenant", "revoke", "acme", "000000000000000000000000"},
		{"tenant", "keys", "acme"}, {"tenant", "remove-key", "acme", "0123456789abcdef"},
		{"escrow", "show"}, {"escrow", "init", "--out", idFile}, {"serve", "--listen", "127.0.0.1:0"},
	}
	for _, dir := range []string{missing, empty} {
		for _, args := range cmds {
			r := cofferdNoInit(t, dir, args...)
			if r.code != exitNoVault || !strings.Contains(r.stderr, "no vault at file://"+dir) ||
				!strings.Contains(r.stderr, "cofferd init --store file://"+dir) {
				t.Errorf("%v on %s: %+v", args, dir, r)
			}
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a command made the mistyped directory: %v", err)
	}
	if names := listDir(t, empty); len(names) != 0 {
		t.Errorf("commands wrote into a store without a vault: %v", names)
	}
	if _, err := os.Stat(idFile); !os.IsNotExist(err) {
		t.Error("escrow init wrote an identity for a store without a vault")
	}

	// init makes it, once; then the commands work.
	r := cofferdNoInit(t, missing, "--json", "init")
	var out initOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Store != "file://"+missing || out.Format != "cofferd-vault" {
		t.Fatalf("init: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(missing, "vault", "format")); err != nil {
		t.Fatal(err)
	}
	if r := cofferdNoInit(t, missing, "init"); r.code != 1 || !strings.Contains(r.stderr, "a vault exists already at file://"+missing) {
		t.Fatalf("second init: %+v", r)
	}
	if r := cofferdNoInit(t, missing, "tenant", "list"); r.code != 0 {
		t.Fatalf("list after init: %+v", r)
	}
}

// The documented default store, file://./coffer-vault, is accepted and is
// relative to the working directory.
func TestDefaultStoreIsRelative(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv(EnvStore, "")
	run1 := func(args ...string) result {
		var out, errb strings.Builder
		code := run(context.Background(), args, &out, &errb)
		return result{code, out.String(), errb.String()}
	}
	want := "file://" + filepath.Join(dir, "coffer-vault")
	if r := run1("tenant", "list"); r.code != exitNoVault || !strings.Contains(r.stderr, "no vault at "+want) {
		t.Fatalf("default store, no vault: %+v", r)
	}
	if r := run1("init"); r.code != 0 || !strings.Contains(r.stdout, want) {
		t.Fatalf("init on the default store: %+v", r)
	}
	if r := run1("--store", "file://./coffer-vault", "tenant", "create", "acme"); r.code != 0 {
		t.Fatalf("file://./coffer-vault: %+v", r)
	}
	if r := run1("--store", "file://../"+filepath.Base(dir)+"/coffer-vault", "tenant", "show", "acme"); r.code != 0 {
		t.Fatalf("file://../: %+v", r)
	}
}

// serve --init makes a vault where there is none and serves it.
func TestServeInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fresh")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"--store", "file://" + dir, "serve", "--init", "--listen", "127.0.0.1:0"}, os.Stdout, &stderr)
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), "cofferd serving"); {
		select {
		case code := <-done:
			t.Fatalf("serve --init exited %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve --init did not start: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d", code)
	}
	if r := cofferdNoInit(t, dir, "tenant", "list"); r.code != 0 {
		t.Fatalf("the vault serve --init made: %+v", r)
	}
}

// init refuses a store that holds objects but no vault (a repository, a
// wrong prefix), and leaves it as it was.
func TestInitRefusesNonEmptyStore(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte("a repository"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init"}, {"serve", "--init", "--listen", "127.0.0.1:0"}} {
		r := cofferdNoInit(t, dir, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "refusing to make a vault in file://"+dir+": it holds objects (config, ...)") {
			t.Errorf("%v: %+v", args, r)
		}
	}
	if names := listDir(t, dir); len(names) != 1 || names[0] != "config" {
		t.Errorf("the refused init wrote: %v", names)
	}
}
