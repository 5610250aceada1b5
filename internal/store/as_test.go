package store_test

import (
	"context"
	"io"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
)

// plain is a Store with no optional capability.
type plain struct{ store.Store }

func (plain) Get(context.Context, string, int64, int64, func(io.Reader) error) error { return nil }

// TestAs: capabilities are found through decorators, from the outermost
// store that has them, and a decorator that forwards one offers it only
// when the store it wraps has it.
func TestAs(t *testing.T) {
	local, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	counting := store.NewCounting(local)
	chain := store.WithRetry(counting, store.DefaultRetry, nil, nil)

	sw, ok := store.As[store.Swapper](chain)
	if !ok || sw != store.Swapper(chain) {
		t.Fatalf("As[Swapper] over a local directory = %T, %v; want the outermost decorator", sw, ok)
	}
	tc, ok := store.As[store.TempCleaner](chain)
	if !ok || tc != store.TempCleaner(chain) {
		t.Fatalf("As[TempCleaner] = %T, %v; want the outermost decorator, which forwards it", tc, ok)
	}
	if _, ok := store.As[store.DeferredPutter](chain); !ok {
		t.Fatal("As[DeferredPutter] over a local directory: not found")
	}

	// A decorator that does not forward a capability hides it: the faults
	// it injects into Put must not be bypassed by a deferred put below it.
	faulty := store.WithRetry(store.NewFaulty(counting), store.DefaultRetry, nil, nil)
	if _, ok := store.As[store.DeferredPutter](faulty); ok {
		t.Fatal("As[DeferredPutter] saw through a fault-injecting decorator")
	}
	if _, ok := store.As[store.TempCleaner](faulty); !ok {
		t.Fatal("As[TempCleaner] lost through the fault-injecting decorator, which forwards it")
	}

	// The same decorators over a store without the capabilities offer none.
	bare := store.WithRetry(store.NewCounting(plain{}), store.DefaultRetry, nil, nil)
	if _, ok := store.As[store.Swapper](bare); ok {
		t.Fatal("a decorator offered Swapper over a store without it")
	}
	if _, ok := store.As[store.DeferredPutter](bare); ok {
		t.Fatal("a decorator offered DeferredPutter over a store without it")
	}
	if _, ok := store.As[store.TempCleaner](bare); ok {
		t.Fatal("TempCleaner found over a store without it")
	}
	if store.DefersPuts(bare) {
		t.Fatal("DefersPuts over a store without DeferredPutter")
	}
}

type sessionStore struct{ store.Store }

func (sessionStore) BeginUpload(context.Context) (*store.UploadSession, error) {
	return &store.UploadSession{ID: "s"}, nil
}

// The decorators an agent's store is wrapped in pass upload sessions
// through: a backup behind a bandwidth limit still holds one.
func TestUploadSessionsPassThrough(t *testing.T) {
	local, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	var base store.Store = sessionStore{Store: local}
	bw := store.WithBandwidth(store.NewCounting(base), store.NewBandwidth(nil, store.ConstantLimits(store.Limits{Put: 1 << 20})))
	top := store.WithRetry(bw, store.DefaultRetry, nil, nil)
	us, ok := store.As[store.UploadSessions](top)
	if !ok {
		t.Fatal("retry over bandwidth over counting hides upload sessions")
	}
	if s, err := us.BeginUpload(context.Background()); err != nil || s.ID != "s" {
		t.Fatalf("BeginUpload: %+v %v", s, err)
	}
}
