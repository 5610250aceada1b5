package ledger

import (
	"context"
	"sync"
	"time"

	"github.com/cofferhq/coffer/vault/registry"
)

// Group commit. Every upload changes its tenant's usage document twice
// (reserve, then commit), and one agent uploads several packs at once: done
// one by one, those compare-and-swaps conflict with each other and each
// costs a read and a write of the document. Instead, changes to one
// tenant's document that arrive while a write is in progress queue up, and
// the next write applies them all in one compare-and-swap. Each change still
// succeeds or fails on its own (a quota refusal fails only its upload).
// Across replicas nothing changes: the compare-and-swap still arbitrates.

// batchTimeout bounds one group write; it is not tied to any one request,
// since the write carries the changes of several.
const batchTimeout = 30 * time.Second

type change struct {
	fn   func(cur *Usage, exists bool) (*Usage, error)
	err  error
	done chan struct{}
}

type tenantQueue struct {
	mu      sync.Mutex
	pending []*change
	writing bool
}

type batcher struct {
	mu     sync.Mutex
	queues map[string]*tenantQueue
}

func (b *batcher) queue(tenant string) *tenantQueue {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.queues == nil {
		b.queues = map[string]*tenantQueue{}
	}
	q := b.queues[tenant]
	if q == nil {
		q = &tenantQueue{}
		b.queues[tenant] = q
	}
	return q
}

// update applies fn to tenant's usage document, together with the changes
// other requests queue meanwhile, and returns fn's own error. fn must not
// modify cur (clone it), and must be idempotent: a compare-and-swap that
// conflicts runs it again on the newer document.
func (l *Ledger) update(ctx context.Context, tenant string, fn func(cur *Usage, exists bool) (*Usage, error)) error {
	q := l.batch.queue(tenant)
	c := &change{fn: fn, done: make(chan struct{})}
	q.mu.Lock()
	q.pending = append(q.pending, c)
	lead := !q.writing
	q.writing = true
	q.mu.Unlock()
	if lead {
		l.writeBatches(context.WithoutCancel(ctx), tenant, q)
	}
	<-c.done // bounded by batchTimeout
	return c.err
}

// writeBatches writes the queued changes, one compare-and-swap per batch,
// until the queue is empty. The first batch is written by the caller; the
// rest in the background, so its request is not held up by later ones.
func (l *Ledger) writeBatches(ctx context.Context, tenant string, q *tenantQueue) {
	q.mu.Lock()
	batch := q.pending
	q.pending = nil
	q.mu.Unlock()

	wctx, cancel := context.WithTimeout(ctx, batchTimeout)
	_, err := registry.Update(wctx, l.sw, usageKey(tenant), maxUsageDoc, func(cur *Usage, exists bool) (*Usage, error) {
		state, ok := cur, exists
		for _, c := range batch {
			next, err := c.fn(state, ok)
			c.err = err
			if err == nil && next != nil {
				state, ok = next, true
			}
		}
		return state, nil // unchanged (== cur) means no write
	})
	cancel()
	for _, c := range batch {
		if err != nil {
			c.err = err
		}
		close(c.done)
	}

	q.mu.Lock()
	more := len(q.pending) > 0
	if !more {
		q.writing = false
	}
	q.mu.Unlock()
	if more {
		go l.writeBatches(ctx, tenant, q)
	}
}
