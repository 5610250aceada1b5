package uploader

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
)

// TestPackerManyWritersLargeBlobs has many workers add incompressible blobs
// of the largest chunk size at once. A pack closes as soon as a reservation
// reaches the pack size, so however the writers interleave, no blob is
// refused for want of room and no pack grows past one blob over its size.
func TestPackerManyWritersLargeBlobs(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	ctx := context.Background()
	st, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(ctx, st, []byte("pw"), repo.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	maxChunk := int(r.Config().Chunker.Max)
	p := newPacker(r, 3)
	var ups errgroup.Group
	for i := 0; i < 2; i++ {
		ups.Go(func() error { return p.uploader(ctx) })
	}
	const writers, each = 8, 12
	var (
		mu  sync.Mutex
		ids []crypto.ID
	)
	var g errgroup.Group
	for w := 0; w < writers; w++ {
		g.Go(func() error {
			var scratch []byte
			for i := 0; i < each; i++ {
				payload := make([]byte, maxChunk-i*1024) // near the largest chunk
				_, _ = rand.Read(payload)
				var id crypto.ID
				_, _ = rand.Read(id[:])
				if err := p.add(ctx, pack.TypeData, 0, id, len(payload), payload, &scratch); err != nil {
					return err
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
			return nil
		})
	}
	addErr := g.Wait()
	flushErr := p.flushOpen(ctx, ^uint64(0))
	close(p.uploads) // the uploaders finish before the test's directory goes
	if err := errors.Join(addErr, flushErr, ups.Wait()); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if !r.Index.Has(id) {
			t.Fatalf("blob %s was added but is not indexed", id)
		}
	}
	limit := int64(p.packSize + maxChunk + crypto.Overhead + 64<<10)
	n := 0
	err = st.List(ctx, repo.DataPrefix, func(i store.Info) error {
		n++
		if i.Size > limit {
			t.Errorf("pack %s is %d bytes, more than one blob over the pack size (%d)", i.Name, i.Size, limit)
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("listing packs: %d, %v", n, err)
	}
}
