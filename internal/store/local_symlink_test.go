package store_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// symlinkRig is a local store with an outside directory holding a secret
// file, and helpers to plant links inside the store that point out.
type symlinkRig struct {
	t       *testing.T
	root    string
	outside string
	l       *store.Local
}

const outsideSecret = "outside the store"

func newSymlinkRig(t *testing.T) *symlinkRig {
	base := t.TempDir()
	r := &symlinkRig{t: t, root: filepath.Join(base, "store"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{r.root, r.outside} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(r.outside, "secret"), []byte(outsideSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := store.OpenLocal(r.root, false)
	if err != nil {
		t.Fatal(err)
	}
	r.l = l
	return r
}

// link plants a symbolic link at rel (below the root) pointing to target.
func (r *symlinkRig) link(rel, target string) {
	r.t.Helper()
	p := filepath.Join(r.root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		r.t.Fatal(err)
	}
}

// outsideUnchanged fails unless the outside directory holds exactly the
// secret, unchanged.
func (r *symlinkRig) outsideUnchanged() {
	r.t.Helper()
	got, err := os.ReadFile(filepath.Join(r.outside, "secret"))
	if err != nil || string(got) != outsideSecret {
		r.t.Fatalf("the outside file: %q, %v", got, err)
	}
	if got := files(r.t, r.outside); len(got) != 1 {
		r.t.Fatalf("the store wrote outside its root: %v", got)
	}
}

func wantSymlinkErr(t *testing.T, op string, err error, name string) {
	t.Helper()
	if !errors.Is(err, store.ErrSymlink) || !strings.Contains(err.Error(), name) || !store.IsPermanent(err) {
		t.Fatalf("%s: %v; want a permanent ErrSymlink naming %s", op, err, name)
	}
}

// TestLocalSymlinkedObject: a symbolic link planted where an object would
// be is neither read, statted, listed nor overwritten through; Delete
// removes the link, not its target.
func TestLocalSymlinkedObject(t *testing.T) {
	ctx := t.Context()
	r := newSymlinkRig(t)
	const name = "keys/0123"
	r.link(name, filepath.Join(r.outside, "secret"))
	_, err := store.ReadAll(ctx, r.l, name)
	wantSymlinkErr(t, "get", err, name)
	_, err = r.l.Stat(ctx, name)
	wantSymlinkErr(t, "stat", err, name)
	err = r.l.Put(ctx, name, bytes.NewReader([]byte("new")), 3)
	wantSymlinkErr(t, "put", err, name)
	var listed []string
	if err := r.l.List(ctx, "", func(i store.Info) error { listed = append(listed, i.Name); return nil }); err != nil || len(listed) != 0 {
		t.Fatalf("list = %v, %v; want nothing", listed, err)
	}
	if got := store.SkippedLinks(store.NewCounting(r.l)); len(got) != 1 || got[0] != name {
		t.Fatalf("SkippedLinks = %v; want [%s]", got, name)
	}
	r.outsideUnchanged()
	if err := r.l.Delete(ctx, name); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(r.root, "keys", "0123")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the link is still there: %v", err)
	}
	r.outsideUnchanged()
}

// TestLocalSymlinkedDirectory: a symlinked directory inside the store is
// never walked through, for reads, writes, stats, listings or deletes.
func TestLocalSymlinkedDirectory(t *testing.T) {
	ctx := t.Context()
	r := newSymlinkRig(t)
	r.link("data/ab", r.outside)
	r.link("index", r.outside)
	const name = "data/ab/secret"
	_, err := store.ReadAll(ctx, r.l, name)
	wantSymlinkErr(t, "get", err, "data/ab")
	_, err = r.l.Stat(ctx, name)
	wantSymlinkErr(t, "stat", err, "data/ab")
	err = r.l.Put(ctx, "data/ab/new", bytes.NewReader([]byte("new")), 3)
	wantSymlinkErr(t, "put", err, "data/ab")
	_, err = r.l.PutDeferred(ctx, "index/new", bytes.NewReader([]byte("new")), 3)
	wantSymlinkErr(t, "deferred put", err, "index")
	err = r.l.Delete(ctx, name)
	wantSymlinkErr(t, "delete", err, "data/ab")
	var listed []string
	collect := func(i store.Info) error { listed = append(listed, i.Name); return nil }
	if err := r.l.List(ctx, "data/", collect); err != nil || len(listed) != 0 {
		t.Fatalf("list data/ = %v, %v; want nothing", listed, err)
	}
	err = r.l.List(ctx, "index/", collect)
	wantSymlinkErr(t, "list index/", err, "index")
	if len(listed) != 0 {
		t.Fatalf("listed %v through a symlinked directory", listed)
	}
	r.outsideUnchanged()
	// A real object beside the links is still stored and read normally.
	if err := r.l.Put(ctx, "data/cd/obj", bytes.NewReader([]byte("ok")), 2); err != nil {
		t.Fatal(err)
	}
	if got, err := store.ReadAll(ctx, r.l, "data/cd/obj"); err != nil || string(got) != "ok" {
		t.Fatalf("a plain object: %q, %v", got, err)
	}
}

// TestLocalSymlinkedTempFile: the stale-temp cleaner neither removes nor
// follows a symbolic link that looks like a dead writer's temporary file.
func TestLocalSymlinkedTempFile(t *testing.T) {
	ctx := t.Context()
	r := newSymlinkRig(t)
	past := time.Now().Add(-2 * store.TempGrace)
	if err := os.Chtimes(filepath.Join(r.outside, "secret"), past, past); err != nil {
		t.Fatal(err)
	}
	r.link("data/ab/.tmp-0123456789abcdef", filepath.Join(r.outside, "secret"))
	r.link("data/cd", r.outside)
	deadLooking := filepath.Join(r.outside, ".tmp-00112233445566aa")
	if err := os.WriteFile(deadLooking, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(deadLooking, past, past); err != nil {
		t.Fatal(err)
	}
	rep, err := store.RemoveStaleTemp(ctx, r.l)
	if err != nil || rep.Removed != 0 {
		t.Fatalf("RemoveStaleTemp = %+v, %v; want nothing removed", rep, err)
	}
	if _, err := os.Lstat(filepath.Join(r.root, "data", "ab", ".tmp-0123456789abcdef")); err != nil {
		t.Fatalf("the link: %v", err)
	}
	if _, err := os.Stat(deadLooking); err != nil {
		t.Fatalf("the cleaner walked through a symlinked directory: %v", err)
	}
}
