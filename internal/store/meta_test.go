package store_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// metaStore is a store that takes metadata, like the vault client: it
// records what each put carried and fails the first failPuts puts.
type metaStore struct {
	store.Store
	mu       sync.Mutex
	failPuts int
	metas    []*store.ObjectMeta // one per put; nil for a plain Put
}

func (m *metaStore) record(meta *store.ObjectMeta) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.metas = append(m.metas, meta)
	if m.failPuts > 0 {
		m.failPuts--
		return errors.New("connection reset") // transient
	}
	return nil
}

func (m *metaStore) Put(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	if err := m.record(nil); err != nil {
		return err
	}
	return m.Store.Put(ctx, name, r, size)
}

func (m *metaStore) PutMeta(ctx context.Context, name string, r io.ReaderAt, size int64, meta store.ObjectMeta) error {
	if err := m.record(&meta); err != nil {
		return err
	}
	return m.Store.Put(ctx, name, r, size)
}

// TestPutWithMetaThroughDecorators checks that an object's metadata
// reaches a store that takes it through the retry and counting layers
// (retried and counted as a Put), that Faulty hides it, and that a store
// without metadata gets a plain Put.
func TestPutWithMetaThroughDecorators(t *testing.T) {
	want := store.ObjectMeta{LogicalBytes: 10 << 30, DataBytes: 3 << 30}
	body := store.Bytes("snapshot")
	newMeta := func(t *testing.T) (*metaStore, *store.Local) {
		local, err := store.OpenLocal(t.TempDir(), false)
		if err != nil {
			t.Fatal(err)
		}
		return &metaStore{Store: local, failPuts: 1}, local
	}
	policy := store.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond}

	ms, local := newMeta(t)
	counting := store.NewCounting(ms)
	top := store.WithRetry(counting, policy, nil, nil)
	if err := store.PutWithMeta(t.Context(), top, "snapshots/a", body, int64(len(body)), want); err != nil {
		t.Fatalf("PutWithMeta: %v", err)
	}
	if len(ms.metas) != 2 || ms.metas[0] == nil || *ms.metas[0] != want || ms.metas[1] == nil || *ms.metas[1] != want {
		t.Fatalf("the store saw %d puts with %v; want 2 (one retry), each with %+v", len(ms.metas), ms.metas, want)
	}
	if counting.Requests() != 2 || counting.PutBytes() != int64(len(body)) {
		t.Errorf("counted %d requests, %d bytes; want 2, %d", counting.Requests(), counting.PutBytes(), len(body))
	}
	if got, err := store.ReadAll(t.Context(), local, "snapshots/a"); err != nil || string(got) != string(body) {
		t.Errorf("stored %q, %v", got, err)
	}

	ms, _ = newMeta(t)
	ms.failPuts = 0
	if err := store.PutWithMeta(t.Context(), store.WithRetry(store.NewFaulty(ms), policy, nil, nil), "snapshots/a", body, int64(len(body)), want); err != nil {
		t.Fatal(err)
	}
	if len(ms.metas) != 1 || ms.metas[0] != nil {
		t.Errorf("under Faulty the store saw %v; want one plain Put", ms.metas)
	}

	_, local = newMeta(t)
	if err := store.PutWithMeta(t.Context(), store.WithRetry(local, policy, nil, nil), "snapshots/b", body, int64(len(body)), want); err != nil {
		t.Fatalf("PutWithMeta into a local store: %v", err)
	}
	if got, err := store.ReadAll(t.Context(), local, "snapshots/b"); err != nil || string(got) != string(body) {
		t.Errorf("local store holds %q, %v", got, err)
	}
}
