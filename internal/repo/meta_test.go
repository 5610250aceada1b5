package repo

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// metaRecorder takes metadata with its puts, as the vault client does, and
// records it by object name.
type metaRecorder struct {
	store.Store
	mu    sync.Mutex
	metas map[string]store.ObjectMeta
}

func (m *metaRecorder) PutMeta(ctx context.Context, name string, r io.ReaderAt, size int64, meta store.ObjectMeta) error {
	m.mu.Lock()
	m.metas[name] = meta
	m.mu.Unlock()
	return m.Store.Put(ctx, name, r, size)
}

// TestSaveSnapshotReportsSizes checks that saving a snapshot through the
// agent's decorators tells a store that takes metadata the disks' logical
// and data bytes, and only for the snapshot object.
func TestSaveSnapshotReportsSizes(t *testing.T) {
	local, _ := newStore(t)
	rec := &metaRecorder{Store: local, metas: map[string]store.ObjectMeta{}}
	st := store.WithRetry(store.NewCounting(rec), store.DefaultRetry, nil, nil)
	r, err := Init(ctx, st, []byte(pass), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	s := testSnapshot("web01", time.Unix(1000, 0).UTC())
	// Empty disks (a receipt reads every region map, and these have
	// none), with data counts the vault is told all the same.
	s.Disks[0].Stats.DataBytes = 3 << 20
	second := s.Disks[0]
	second.Index, second.Name, second.Stats.DataBytes = 1, "e", 5<<20
	s.Disks = append(s.Disks, second)
	id, err := r.SaveSnapshot(ctx, s)
	if err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	want := store.ObjectMeta{LogicalBytes: 0, DataBytes: 8 << 20}
	if got, ok := rec.metas[SnapshotsPrefix+id]; !ok || got != want {
		t.Errorf("the snapshot was put with %+v (%v); want %+v", got, ok, want)
	}
	for name := range rec.metas {
		if !strings.HasPrefix(name, SnapshotsPrefix) {
			t.Errorf("%s was put with metadata; only snapshots carry it", name)
		}
	}
	if _, err := local.Stat(ctx, SnapshotsPrefix+id); err != nil {
		t.Errorf("the snapshot is not stored: %v", err)
	}
}
