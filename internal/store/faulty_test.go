package store_test

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
)

func newFaulty(t *testing.T, objs map[string]string) *store.Faulty {
	t.Helper()
	l := newLocal(t)
	for name, b := range objs {
		if err := l.Put(t.Context(), name, bytes.NewReader([]byte(b)), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	return store.NewFaulty(l)
}

func TestFaultyMatchesOpAndPrefix(t *testing.T) {
	f := newFaulty(t, map[string]string{"data/a": "A", "index/b": "B"})
	boom := errors.New("boom")
	f.Add(store.FaultRule{Op: "get", Prefix: "data/", Times: -1, Err: boom})
	ctx := t.Context()
	for range 3 {
		if _, err := store.ReadAll(ctx, f, "data/a"); !errors.Is(err, boom) {
			t.Errorf("get data/a = %v; want boom", err)
		}
	}
	if b, err := store.ReadAll(ctx, f, "index/b"); err != nil || string(b) != "B" {
		t.Errorf("get index/b = %q, %v; want B (prefix does not match)", b, err)
	}
	if _, err := f.Stat(ctx, "data/a"); err != nil {
		t.Errorf("stat data/a = %v; want nil (op does not match)", err)
	}
	if f.Ops("get") != 4 || f.Ops("stat") != 1 {
		t.Errorf("ops get=%d stat=%d; want 4, 1", f.Ops("get"), f.Ops("stat"))
	}
}

func TestFaultyTimesAndOrder(t *testing.T) {
	f := newFaulty(t, map[string]string{"config": "c"})
	first, second := errors.New("first"), errors.New("second")
	f.Add(store.FaultRule{Op: "stat", Times: 2, Err: first})
	f.Add(store.FaultRule{Times: 1, Err: second}) // any op
	ctx := t.Context()
	var got []error
	for range 4 {
		_, err := f.Stat(ctx, "config")
		got = append(got, err)
	}
	want := []error{first, first, second, nil}
	for i := range want {
		if !errors.Is(got[i], want[i]) {
			t.Errorf("stat %d = %v; want %v", i+1, got[i], want[i])
		}
	}
	if err := f.Delete(ctx, "config"); err != nil {
		t.Errorf("delete after rules ran out = %v", err)
	}
}

func TestFaultyDefaultErrorIsTransient(t *testing.T) {
	f := newFaulty(t, nil)
	f.Add(store.FaultRule{Op: "list", Times: 1})
	err := f.List(t.Context(), "", func(store.Info) error { return nil })
	if !errors.Is(err, store.ErrInjected) || store.IsPermanent(err) {
		t.Errorf("list = %v; want the transient ErrInjected", err)
	}
}

func TestFaultyGetAfterBytes(t *testing.T) {
	f := newFaulty(t, map[string]string{"data/x": "0123456789"})
	f.Add(store.FaultRule{Op: "get", Times: 1, AfterBytes: 4})
	var got []byte
	err := f.Get(t.Context(), "data/x", 0, -1, func(r io.Reader) error {
		var err error
		got, err = io.ReadAll(r)
		return err
	})
	if !errors.Is(err, store.ErrInjected) || string(got) != "0123" {
		t.Errorf("get = %q, %v; want \"0123\" then ErrInjected", got, err)
	}
}

// countingReaderAt counts the bytes read from it.
type countingReaderAt struct {
	r io.ReaderAt
	n atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

func TestFaultyPutAfterBytes(t *testing.T) {
	f := newFaulty(t, nil)
	f.Add(store.FaultRule{Op: "put", Times: 1, AfterBytes: 100})
	src := &countingReaderAt{r: bytes.NewReader(make([]byte, 1000))}
	if err := f.Put(t.Context(), "data/p", src, 1000); !errors.Is(err, store.ErrInjected) {
		t.Errorf("put = %v; want ErrInjected", err)
	}
	if n := src.n.Load(); n != 100 {
		t.Errorf("failed put read %d bytes of the source, want 100", n)
	}
	if _, err := f.Stat(t.Context(), "data/p"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stat after failed put = %v; want ErrNotFound", err)
	}
	if err := f.Put(t.Context(), "data/p", src, 1000); err != nil {
		t.Errorf("put after the rule ran out = %v", err)
	}
	if f.Ops("put") != 2 {
		t.Errorf("ops put=%d; want 2", f.Ops("put"))
	}
}
