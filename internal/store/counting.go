package store

import (
	"context"
	"io"
	"sync/atomic"
)

// Counting wraps a store and counts requests and bytes, for summaries and
// the benchmark's requests-per-GiB figure. Placed below the retry layer it
// counts every attempt.
type Counting struct {
	Store
	requests atomic.Int64
	putBytes atomic.Int64
	getBytes atomic.Int64
}

// NewCounting wraps s.
func NewCounting(s Store) *Counting { return &Counting{Store: s} }

// Requests returns the number of requests made.
func (c *Counting) Requests() int64 { return c.requests.Load() }

// PutBytes returns the bytes of successful puts.
func (c *Counting) PutBytes() int64 { return c.putBytes.Load() }

// GetBytes returns the bytes requested by gets.
func (c *Counting) GetBytes() int64 { return c.getBytes.Load() }

// Put implements Store.
func (c *Counting) Put(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	c.requests.Add(1)
	err := c.Store.Put(ctx, name, r, size)
	if err == nil {
		c.putBytes.Add(size)
	}
	return err
}

// PutDeferred implements DeferredPutter.
func (c *Counting) PutDeferred(ctx context.Context, name string, r io.ReaderAt, size int64) (func(context.Context) error, error) {
	c.requests.Add(1)
	commit, err := PutDeferred(ctx, c.Store, name, r, size)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		err := commit(ctx)
		if err == nil {
			c.putBytes.Add(size)
		}
		return err
	}, nil
}

// DefersPuts implements DeferredPutter.
func (c *Counting) DefersPuts() bool { return DefersPuts(c.Store) }

// Get implements Store.
func (c *Counting) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	c.requests.Add(1)
	if length > 0 {
		c.getBytes.Add(length)
	}
	return c.Store.Get(ctx, name, off, length, fn)
}

// Stat implements Store.
func (c *Counting) Stat(ctx context.Context, name string) (Info, error) {
	c.requests.Add(1)
	return c.Store.Stat(ctx, name)
}

// List implements Store. A listing counts as one request per 1000 names, as
// S3 pages it.
func (c *Counting) List(ctx context.Context, prefix string, fn func(Info) error) error {
	c.requests.Add(1)
	n := 0
	return c.Store.List(ctx, prefix, func(i Info) error {
		n++
		if n%1000 == 0 {
			c.requests.Add(1)
		}
		return fn(i)
	})
}

// Delete implements Store.
func (c *Counting) Delete(ctx context.Context, name string) error {
	c.requests.Add(1)
	return c.Store.Delete(ctx, name)
}
