package storeurl

import (
	"context"

	"github.com/cofferhq/coffer/internal/store"
)

// Stack is a store as the binaries use it: the provider a URL names, a
// request counter on it, and one retry layer on top. Callers use Retry;
// Provider and Counting are there for what only they know.
type Stack struct {
	Provider store.Store     // the store the URL names, undecorated
	Counting *store.Counting // counts the provider's requests and bytes
	Retry    *store.Retry    // the top of the stack
}

// Open opens the store rawURL names (see OpenProvider) and wraps it as
// Decorate does.
func Open(ctx context.Context, rawURL string, o Options) (*Stack, error) {
	p, err := OpenProvider(ctx, rawURL, o)
	if err != nil {
		return nil, err
	}
	return Decorate(p, o), nil
}

// Decorate wraps a provider in the decorators, in their one order:
// counting, then the bandwidth limit when o.Bandwidth is set (below the
// retry layer, so a retried body is metered again), then one retry layer,
// which retries under o.Retry (the zero value means store.DefaultRetry)
// on o.Clock, logging to o.Log. It is for
// a provider opened otherwise than from a URL (a vault client made for a
// tenant, a test's fake); Open uses it for every other.
func Decorate(p store.Store, o Options) *Stack {
	c := store.NewCounting(p)
	var below store.Store = c
	if o.Bandwidth != nil {
		below = store.WithBandwidth(c, o.Bandwidth)
	}
	return &Stack{Provider: p, Counting: c, Retry: store.WithRetry(below, retryPolicy(o), o.Clock, o.Log)}
}

func retryPolicy(o Options) store.RetryPolicy {
	if o.Retry.Attempts == 0 {
		return store.DefaultRetry
	}
	return o.Retry
}
