package store

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
)

// A read-only view sees only its prefix's objects, under their short names,
// and refuses every write.
func TestReadOnlySub(t *testing.T) {
	ctx := context.Background()
	st, err := OpenLocal(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"repos/a/config", "repos/a/data/00/x", "repos/ab/config", "other"} {
		if err := st.Put(ctx, n, Bytes([]byte(n)), int64(len(n))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ReadOnlySub(st, "repos/a"); err == nil {
		t.Fatal("a prefix without a trailing slash was accepted")
	}
	v, err := ReadOnlySub(st, "repos/a/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := v.List(ctx, "", func(i Info) error { names = append(names, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"config", "data/00/x"}) {
		t.Fatalf("listed %q", names)
	}
	var got []byte
	if err := v.Get(ctx, "config", 0, -1, func(r io.Reader) error { got, err = io.ReadAll(r); return err }); err != nil || string(got) != "repos/a/config" {
		t.Fatalf("get: %q, %v", got, err)
	}
	if i, err := v.Stat(ctx, "data/00/x"); err != nil || i.Name != "data/00/x" {
		t.Fatalf("stat: %+v, %v", i, err)
	}
	if _, err := v.Stat(ctx, "other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an object outside the prefix: %v", err)
	}
	if err := v.Put(ctx, "new", Bytes([]byte("x")), 1); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("put: %v", err)
	}
	if err := v.Delete(ctx, "config"); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("delete: %v", err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(ctx, "repos/a/config"); err != nil {
		t.Fatalf("closing the view closed the store: %v", err)
	}
}
