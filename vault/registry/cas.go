package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// MaxAttempts bounds the compare-and-swap loop of Update.
const MaxAttempts = 32

// Revision is embedded in every state document. Update sets Rev to one more
// than the stored document's on every write, so the bytes of a document
// never recur (S3 versions are content MD5s: without it an A-B-A sequence
// could make a stale version look current).
type Revision struct {
	Rev int64 `json:"rev"`
}

func (r *Revision) revision() *int64 { return &r.Rev }

type revisioned interface{ revision() *int64 }

// Update is the only way vault state changes. It reads name (at most max
// bytes), calls fn with the current document (nil and exists=false when
// there is none), and stores what fn returns with a compare-and-swap;
// when another writer got there first it reads again and calls fn again, up
// to MaxAttempts times with jittered backoff (5 ms doubling to 200 ms).
//
// fn returning cur itself (the same pointer) means "no change": nothing is
// written and cur is returned. fn returning an error stops the loop and
// Update returns that error unchanged. fn must be idempotent: a Swap whose
// reply was lost may have been applied, and then fn runs again on the
// document that already holds its change and must return cur.
func Update[T any](ctx context.Context, sw store.Swapper, name string, max int64,
	fn func(cur *T, exists bool) (*T, error)) (*T, error) {
	backoff := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		b, version, err := sw.ReadVersioned(ctx, name, max)
		exists := true
		switch {
		case errors.Is(err, store.ErrNotFound):
			exists, version = false, ""
		case err != nil:
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		var cur *T
		if exists {
			cur = new(T)
			if err := json.Unmarshal(b, cur); err != nil {
				return nil, fmt.Errorf("vault state %s is corrupt: %w", name, err)
			}
		}
		next, err := fn(cur, exists)
		if err != nil {
			return nil, err
		}
		if next == nil {
			return nil, fmt.Errorf("updating %s: no document", name)
		}
		if exists && next == cur {
			return cur, nil
		}
		if nr, ok := any(next).(revisioned); ok {
			rev := int64(1)
			if cr, ok := any(cur).(revisioned); ok && cur != nil {
				rev = *cr.revision() + 1
			}
			*nr.revision() = rev
		}
		out, err := json.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("encoding %s: %w", name, err)
		}
		if int64(len(out)) > max {
			return nil, fmt.Errorf("vault state %s would grow to %d bytes, above its limit of %d", name, len(out), max)
		}
		_, err = sw.Swap(ctx, name, out, version)
		if err == nil {
			return next, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
		if attempt >= MaxAttempts {
			return nil, fmt.Errorf("writing %s: gave up after %d conflicting updates: %w", name, attempt, err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// read fetches and decodes one document (store.ErrNotFound when missing).
func read[T any](ctx context.Context, sw store.Swapper, name string, max int64) (*T, error) {
	b, _, err := sw.ReadVersioned(ctx, name, max)
	if err != nil {
		return nil, err
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("vault state %s is corrupt: %w", name, err)
	}
	return v, nil
}

// create stores a new document; it fails with store.ErrConflict when name
// exists.
func create(ctx context.Context, sw store.Swapper, name string, v any) error {
	if r, ok := v.(revisioned); ok && *r.revision() == 0 {
		*r.revision() = 1
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	_, err = sw.Swap(ctx, name, b, "")
	return err
}
