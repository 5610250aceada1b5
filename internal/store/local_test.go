package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

func newLocal(t *testing.T) *store.Local {
	t.Helper()
	l, err := store.OpenLocal(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLocalConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return newLocal(t) })
}

// files returns the regular files below root, relative and slash-separated.
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type shortSource struct{ n int }

func (s shortSource) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(s.n) {
		return 0, io.EOF
	}
	n := min(len(p), s.n-int(off))
	return n, io.EOF
}

type brokenSource struct{}

func (brokenSource) ReadAt([]byte, int64) (int, error) { return 0, errors.New("disk read error") }

func TestLocalFailedPutLeavesNoFiles(t *testing.T) {
	root := t.TempDir()
	l, err := store.OpenLocal(root, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := l.Put(ctx, "data/ab/short", shortSource{n: 10}, 100); err == nil {
		t.Error("Put from a short source succeeded")
	}
	if err := l.Put(ctx, "data/ab/broken", brokenSource{}, 100); err == nil {
		t.Error("Put from a failing source succeeded")
	}
	if got := files(t, root); len(got) != 0 {
		t.Errorf("failed Puts left files: %v", got)
	}
	if err := l.Put(ctx, "data/ab/ok", bytes.NewReader([]byte("fine")), 4); err != nil {
		t.Fatal(err)
	}
	if got := files(t, root); len(got) != 1 || got[0] != "data/ab/ok" {
		t.Errorf("after a good Put the files are %v, want [data/ab/ok]", got)
	}
}

func TestLocalListSkipsTempFiles(t *testing.T) {
	root := t.TempDir()
	l, err := store.OpenLocal(root, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	// What a crash between create and rename leaves behind.
	if err := os.WriteFile(filepath.Join(root, "data", ".tmp-0123456789abcdef"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	var names []string
	err = l.List(t.Context(), "", func(i store.Info) error { names = append(names, i.Name); return nil })
	if err != nil || len(names) != 0 {
		t.Errorf("List = %v, %v; want no names", names, err)
	}
}

// TestLocalRemoveStaleTemp: the temporary files of dead writers are
// removed; those of live writers (an uncommitted deferred put, a file held
// open and locked), young ones and other dot files are kept.
func TestLocalRemoveStaleTemp(t *testing.T) {
	ctx := t.Context()
	root := t.TempDir()
	l, err := store.OpenLocal(root, false)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * store.TempGrace)
	write := func(rel, content string, mtime time.Time) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	// What kill -9 leaves: unlocked, old.
	write("data/ab/.tmp-0123456789abcdef", "half a pack", old)
	write(".tmp-fedcba9876543210", "a config", old)
	// Kept: a young one, names Put never gives, an object.
	write("data/cd/.tmp-00112233445566aa", "just created", time.Now())
	write("data/cd/.tmp-notours", "x", old)
	write("data/cd/.tmpx-0123456789abcdef", "x", old)
	write("data/cd/object", "an object", old)
	// A live writer of an old-looking file: held and locked.
	held := filepath.Join(root, "data", "cd", ".tmp-aaaaaaaaaaaaaaaa")
	write("data/cd/.tmp-aaaaaaaaaaaaaaaa", "being written", old)
	hf, err := os.Open(held)
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	if err := syscall.Flock(int(hf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// A deferred put that is not committed yet, its file made to look old.
	commit, err := l.PutDeferred(ctx, "data/ef/pack", bytes.NewReader([]byte("pack")), 4)
	if err != nil {
		t.Fatal(err)
	}
	var pending string
	for _, f := range files(t, root) {
		if strings.HasPrefix(f, "data/ef/.tmp-") {
			pending = filepath.Join(root, filepath.FromSlash(f))
		}
	}
	if pending == "" {
		t.Fatal("the deferred put made no temporary file")
	}
	if err := os.Chtimes(pending, old, old); err != nil {
		t.Fatal(err)
	}

	// Through the decorators, as the backup calls it.
	rep, err := store.RemoveStaleTemp(ctx, store.WithRetry(store.NewCounting(l), store.DefaultRetry, nil, nil))
	if err != nil || rep.Removed != 2 || rep.Bytes != int64(len("half a pack")+len("a config")) || rep.Young != 1 {
		t.Fatalf("RemoveStaleTemp = %+v, %v; want 2 removed, %d bytes, 1 young", rep, err, len("half a pack")+len("a config"))
	}
	want := []string{"data/cd/.tmp-00112233445566aa", "data/cd/.tmp-aaaaaaaaaaaaaaaa", "data/cd/.tmp-notours",
		"data/cd/.tmpx-0123456789abcdef", "data/cd/object", strings.TrimPrefix(pending, root+"/")}
	got := files(t, root)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("files left: %v\nwant %v", got, want)
	}
	if err := commit(ctx); err != nil {
		t.Fatalf("the deferred put's commit after the cleanup: %v", err)
	}
	if got, err := store.ReadAll(ctx, l, "data/ef/pack"); err != nil || string(got) != "pack" {
		t.Fatalf("the deferred put's object: %q, %v", got, err)
	}

	// Once its writer is gone, the held file goes too; a store with
	// nothing to clean (S3) removes nothing.
	hf.Close()
	if rep, err := store.RemoveStaleTemp(ctx, l); err != nil || rep.Removed != 1 {
		t.Fatalf("after the writer closed: %+v, %v; want 1 removed", rep, err)
	}
	if rep, err := store.RemoveStaleTemp(ctx, store.NewFaulty(newLocal(t))); err != nil || rep != (store.TempReport{}) {
		t.Fatalf("an empty store: %+v, %v", rep, err)
	}
}

func TestOpenLocal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := store.OpenLocal(dir, false); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("OpenLocal of a missing directory = %v; want ErrNotFound", err)
	}
	l, err := store.OpenLocal(dir, true)
	if err != nil {
		t.Fatalf("OpenLocal(create): %v", err)
	}
	if want := "file://" + dir; l.Location() != want {
		t.Errorf("Location = %q, want %q", l.Location(), want)
	}
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenLocal(file, false); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("OpenLocal of a file = %v; want a not-a-directory error", err)
	}
}

// TestLocalNoSpace fills a 64 KiB tmpfs. It needs the right to mount, so it
// is skipped for ordinary users and in most containers.
func TestLocalNoSpace(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (%v)", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	l, err := store.OpenLocal(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1<<20)
	err = l.Put(t.Context(), "data/big", bytes.NewReader(big), int64(len(big)))
	if !errors.Is(err, store.ErrNoSpace) || !store.IsPermanent(err) {
		t.Fatalf("Put of 1 MiB into 64 KiB = %v; want ErrNoSpace", err)
	}
	if got := files(t, dir); len(got) != 0 {
		t.Errorf("failed Put left files: %v", got)
	}
}

// TestLocalPutDeferred: the bytes are taken at once, the object appears
// only at commit, a cancelled commit leaves nothing, and commit is
// create-only.
func TestLocalPutDeferred(t *testing.T) {
	ctx := context.Background()
	l, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	if !store.DefersPuts(store.WithRetry(store.NewCounting(l), store.DefaultRetry, nil, nil)) {
		t.Fatal("the decorators hide the local store's deferred puts")
	}
	src := []byte("pack bytes")
	commit, err := l.PutDeferred(ctx, "data/ab/x", bytes.NewReader(src), int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	copy(src, "overwritten") // the source may be reused at once
	if _, err := l.Stat(ctx, "data/ab/x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("object visible before commit: %v", err)
	}
	if err := commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := store.ReadAll(ctx, l, "data/ab/x"); err != nil || string(got) != "pack bytes" {
		t.Fatalf("after commit: %q, %v", got, err)
	}

	// A cancelled commit discards the object and its temporary file.
	commit, err = l.PutDeferred(ctx, "data/ab/y", bytes.NewReader(src), int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := commit(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled commit = %v", err)
	}
	var names []string
	_ = l.List(ctx, "", func(i store.Info) error { names = append(names, i.Name); return nil })
	if len(names) != 1 || names[0] != "data/ab/x" {
		t.Fatalf("objects after a discarded put: %v", names)
	}
	entries, _ := os.ReadDir(filepath.Join(strings.TrimPrefix(l.Location(), "file://"), "data", "ab"))
	if len(entries) != 1 {
		t.Fatalf("a discarded put left files: %v", entries)
	}

	// Two deferred puts of one name: the second commit finds it taken.
	c1, err := l.PutDeferred(ctx, "data/ab/z", bytes.NewReader(src), int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := l.PutDeferred(ctx, "data/ab/z", bytes.NewReader(src), int64(len(src)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c1(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c2(ctx); !errors.Is(err, store.ErrExists) {
		t.Fatalf("second commit of a taken name = %v, want ErrExists", err)
	}
}

// TestLocalPutBytes puts Bytes sources of several sizes and alignments: the
// aligned bulk of a large page-aligned one goes through direct I/O where the
// file system takes it, and every object reads back exactly.
func TestLocalPutBytes(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	l, err := store.OpenLocal(root, true)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 3<<20+8192) // a large allocation is page-aligned
	for i := range big {
		big[i] = byte(i*7 + i>>12)
	}
	cases := map[string][]byte{
		"data/00/aligned-tail": big[:3<<20+123],
		"data/00/aligned-even": big[:2<<20],
		"data/00/unaligned":    big[1 : 3<<20+1],
		"data/00/small":        big[:100],
		"data/00/empty":        big[:0],
	}
	before := store.DirectBytes()
	for name, b := range cases {
		if err := l.Put(ctx, name, store.Bytes(b), int64(len(b))); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for name, b := range cases {
		got, err := store.ReadAll(ctx, l, name)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("%s: read back %d bytes (%v), want %d", name, len(got), err, len(b))
		}
	}
	direct := store.DirectBytes() - before
	if direct != 0 && direct != 3<<20+2<<20 {
		t.Fatalf("%d bytes went through direct I/O, want the aligned bulk of the two aligned objects (%d)", direct, 5<<20)
	}
	if direct == 0 && directIOWorks(root) {
		t.Fatal("the file system takes O_DIRECT but the store did not use it")
	}
}

// directIOWorks reports whether the file system under dir accepts an
// O_DIRECT write.
func directIOWorks(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, "probe"), os.O_CREATE|os.O_WRONLY|syscall.O_DIRECT, 0o600)
	if err != nil {
		return false
	}
	defer func() { _ = f.Close(); _ = os.Remove(f.Name()) }()
	buf := make([]byte, 1<<20)
	_, err = f.Write(buf)
	return err == nil
}

// TestSweepTemp: a long-running sweeper (cofferd serve) removes a dead
// writer's temporary file at a later sweep when it was too young at the
// first, and reports what it did.
func TestSweepTemp(t *testing.T) {
	root := t.TempDir()
	l, err := store.OpenLocal(root, false)
	if err != nil {
		t.Fatal(err)
	}
	half := filepath.Join(root, "data", "ab", ".tmp-0123456789abcdef")
	if err := os.MkdirAll(filepath.Dir(half), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(half, []byte("half a pack"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	reports := make(chan store.TempReport, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		store.SweepTemp(ctx, store.NewCounting(l), 20*time.Millisecond, func(r store.TempReport, err error) {
			if err != nil {
				t.Errorf("sweep: %v", err)
			}
			reports <- r
		})
	}()
	if r := <-reports; r.Young != 1 || r.Removed != 0 {
		t.Fatalf("first sweep: %+v; want the young file left", r)
	}
	if _, err := os.Stat(half); err != nil {
		t.Fatalf("a young file was removed: %v", err)
	}
	past := time.Now().Add(-2 * store.TempGrace)
	if err := os.Chtimes(half, past, past); err != nil {
		t.Fatal(err)
	}
	for r := range reports {
		if r.Removed == 1 {
			break
		}
	}
	if _, err := os.Stat(half); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the stale file is still there: %v", err)
	}
	cancel()
	<-done
}
