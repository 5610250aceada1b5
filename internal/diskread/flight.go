package diskread

import (
	"context"
	"sync"
)

// call is one load in progress (of a chunk or a region map) that several
// readers may wait for.
type call[V any] struct {
	done chan struct{}
	val  V
	err  error
}

// wait returns the call's result, or ctx's error if ctx ends first.
func (c *call[V]) wait(ctx context.Context) (V, error) {
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero V
		return zero, context.Cause(ctx)
	}
}

// flights tracks the loads in progress by key, so that concurrent misses of
// one key load it once.
type flights[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]*call[V]
}

// claim returns the call in progress for k, or starts one: mine is true
// when the caller must load k and then finish the call.
func (f *flights[K, V]) claim(k K) (c *call[V], mine bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.m[k]; c != nil {
		return c, false
	}
	if f.m == nil {
		f.m = map[K]*call[V]{}
	}
	c = &call[V]{done: make(chan struct{})}
	f.m[k] = c
	return c, true
}

// finish ends the call for k with its result and wakes its waiters. Store
// a good result in its cache before finishing, so that a later miss finds
// it there rather than loading it again.
func (f *flights[K, V]) finish(k K, c *call[V], v V, err error) {
	f.mu.Lock()
	if f.m[k] == c {
		delete(f.m, k)
	}
	f.mu.Unlock()
	c.val, c.err = v, err
	close(c.done)
}
