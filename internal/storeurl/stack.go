package storeurl

import (
	"context"

	"github.com/cofferhq/coffer/internal/store"
)

// Stack is a store as the binaries use it: the provider a URL names, the
// decorators that never retry (object lock, request-rate caps), a request
// counter, and one retry layer on top. Callers use Retry; Provider, Base
// and Counting are there for what only they know.
type Stack struct {
	Provider store.Store // the store the URL names, undecorated
	// Base is Provider with the decorators that do not retry: the object
	// lock (Open, when Options.ObjectLock is set) and the rate caps. A
	// caller that must not retry (the vault streams an upload once) uses
	// it; it is Provider when neither is set.
	Base     store.Store
	Counting *store.Counting // counts Base's requests and bytes
	Retry    *store.Retry    // the top of the stack
}

// Open opens the store rawURL names (see OpenProvider), puts the object
// lock of o.ObjectLock on it when its Mode is set, and wraps it as Decorate
// does.
func Open(ctx context.Context, rawURL string, o Options) (*Stack, error) {
	p, err := OpenProvider(ctx, rawURL, o)
	if err != nil {
		return nil, err
	}
	base := p
	if o.ObjectLock.Mode != store.LockNone {
		if o.ObjectLock.Clock == nil {
			o.ObjectLock.Clock = o.Clock
		}
		if base, err = store.WithObjectLock(p, o.ObjectLock); err != nil {
			p.Close()
			return nil, err
		}
	}
	st, err := decorate(p, base, o)
	if err != nil {
		p.Close()
		return nil, err
	}
	return st, nil
}

// Decorate wraps a provider in the decorators, in their one order: the rate
// caps of o.Rates, counting, the bandwidth limit when o.Bandwidth is set
// (below the retry layer, so a retried body is metered again), and one
// retry layer, which retries under o.Retry (the zero value means
// store.DefaultRetry) on o.Clock, logging to o.Log. It is for a provider
// opened otherwise than from a URL (a vault client made for a tenant, a
// test's fake); Open uses it for every other. Rates that do not validate
// are ignored here (Open reports them).
func Decorate(p store.Store, o Options) *Stack {
	st, err := decorate(p, p, o)
	if err != nil {
		o.Rates = store.RateLimits{}
		st, _ = decorate(p, p, o)
	}
	return st
}

func decorate(p, base store.Store, o Options) (*Stack, error) {
	if !o.Rates.Zero() {
		rl, err := store.WithRateLimit(base, o.Rates)
		if err != nil {
			return nil, err
		}
		base = rl
	}
	c := store.NewCounting(base)
	var below store.Store = c
	if o.Bandwidth != nil {
		below = store.WithBandwidth(c, o.Bandwidth)
	}
	return &Stack{Provider: p, Base: base, Counting: c, Retry: store.WithRetry(below, retryPolicy(o), o.Clock, o.Log)}, nil
}

func retryPolicy(o Options) store.RetryPolicy {
	if o.Retry.Attempts == 0 {
		return store.DefaultRetry
	}
	return o.Retry
}
