package store_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// An overlay over an empty base is a store like any other.
func TestOverlayConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return store.NewOverlay(newLocal(t), newLocal(t))
	})
}

// Reads see the top over the base; writes and deletes touch the top only;
// a listing names each object once; an error of the top other than "not
// found" is not hidden by the base.
func TestOverlaySemantics(t *testing.T) {
	ctx := t.Context()
	top, base := newLocal(t), newLocal(t)
	put := func(s store.Store, name, body string) {
		t.Helper()
		if err := s.Put(ctx, name, store.Bytes([]byte(body)), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	put(base, "index/a", "base a")
	put(base, "index/b", "base b")
	put(top, "index/b", "top b")
	put(top, "data/00/c", "top c")
	ov := store.NewOverlay(top, base)

	for name, want := range map[string]string{"index/a": "base a", "index/b": "top b", "data/00/c": "top c"} {
		got, err := store.ReadAll(ctx, ov, name)
		if err != nil || string(got) != want {
			t.Errorf("ReadAll(%s) = %q, %v; want %q", name, got, err, want)
		}
		if i, err := ov.Stat(ctx, name); err != nil || i.Size != int64(len(want)) {
			t.Errorf("Stat(%s) = %+v, %v; want size %d", name, i, err, len(want))
		}
	}
	if _, err := ov.Stat(ctx, "index/zz"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat of an object in neither: %v; want ErrNotFound", err)
	}
	var names []string
	if err := ov.List(ctx, "", func(i store.Info) error { names = append(names, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if want := []string{"data/00/c", "index/a", "index/b"}; !slices.Equal(names, want) {
		t.Errorf("List = %q; want %q, each once", names, want)
	}

	// A name only the base holds is written into the top; one the top
	// holds is refused.
	put(ov, "index/a", "base a")
	if b, err := store.ReadAll(ctx, top, "index/a"); err != nil || string(b) != "base a" {
		t.Errorf("Put of a name the base holds: top has %q, %v", b, err)
	}
	if err := ov.Put(ctx, "index/b", store.Bytes([]byte("x")), 1); !errors.Is(err, store.ErrExists) {
		t.Errorf("Put of a name the top holds: %v; want ErrExists", err)
	}
	commit, err := ov.PutDeferred(ctx, "data/00/d", bytes.NewReader([]byte("deferred")), 8)
	if err != nil || commit(ctx) != nil {
		t.Fatalf("PutDeferred: %v", err)
	}
	if _, err := top.Stat(ctx, "data/00/d"); err != nil {
		t.Errorf("a deferred put did not reach the top: %v", err)
	}
	if err := ov.Delete(ctx, "index/b"); err != nil {
		t.Fatal(err)
	}
	if err := ov.Delete(ctx, "index/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := base.Stat(ctx, "index/b"); err != nil {
		t.Errorf("Delete reached the base: %v", err)
	}
	if b, _ := store.ReadAll(ctx, ov, "index/b"); string(b) != "base b" {
		t.Errorf("after deleting the top's index/b, reads see %q; want the base's", b)
	}
	for _, name := range []string{"data/00/c", "data/00/d"} {
		if _, err := base.Stat(ctx, name); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s reached the base (%v)", name, err)
		}
	}

	faulty := store.NewFaulty(top)
	faulty.Add(store.FaultRule{Op: "get", Times: -1})
	faulty.Add(store.FaultRule{Op: "stat", Times: -1})
	broken := store.NewOverlay(faulty, base)
	if _, err := store.ReadAll(ctx, broken, "index/a"); !errors.Is(err, store.ErrInjected) {
		t.Errorf("a failing top: %v; want its error, not the base's object", err)
	}
	if _, err := broken.Stat(ctx, "index/a"); !errors.Is(err, store.ErrInjected) {
		t.Errorf("a failing top: %v; want its error", err)
	}
}

// The overlay offers the top's deferred puts and no capability of the
// base: no swaps, no upload sessions, no metadata puts.
func TestOverlayCapabilities(t *testing.T) {
	ov := store.NewOverlay(newLocal(t), newLocal(t))
	if _, ok := store.As[store.DeferredPutter](ov); !ok {
		t.Error("the top's deferred puts are hidden")
	}
	if _, ok := store.As[store.TempCleaner](ov); !ok {
		t.Error("the top's temporary-file cleanup is hidden")
	}
	if _, ok := store.As[store.Swapper](ov); ok {
		t.Error("the overlay offers swaps")
	}
	if _, ok := store.As[store.UploadSessions](ov); ok {
		t.Error("the overlay offers upload sessions")
	}
	if _, ok := store.As[store.MetaPutter](ov); ok {
		t.Error("the overlay offers metadata puts")
	}
	// Sessions only when asked for, and only when the base has them.
	if ov.WithSessions() != store.Store(ov) {
		t.Error("WithSessions over a base without sessions offers them")
	}
	withSessions := store.NewOverlay(newLocal(t), baseWithSessions{Store: newLocal(t)}).WithSessions()
	us, ok := store.As[store.UploadSessions](withSessions)
	if !ok {
		t.Fatal("WithSessions hides the base's upload sessions")
	}
	if s, err := us.BeginUpload(context.Background()); err != nil || s.ID != "from-the-base" {
		t.Fatalf("BeginUpload = %+v, %v; want the base's session", s, err)
	}
	if _, ok := store.As[store.DeferredPutter](withSessions); !ok {
		t.Error("WithSessions hides the top's deferred puts")
	}
}

// baseWithSessions is a store with upload sessions.
type baseWithSessions struct{ store.Store }

func (baseWithSessions) BeginUpload(context.Context) (*store.UploadSession, error) {
	return &store.UploadSession{ID: "from-the-base"}, nil
}
