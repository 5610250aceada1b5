package store

import (
	"context"
	"io"
)

// ObjectMeta is what a writer may tell a store about an object beyond its
// bytes. Only the vault client takes it: the vault cannot decrypt, so the
// agent reports a snapshot's sizes for the tenant's usage (logical bytes,
// hence the dedup ratio). Other stores have no use for it.
type ObjectMeta struct {
	LogicalBytes int64 // the disks' sizes
	DataBytes    int64 // the non-zero bytes read
}

// MetaPutter is a store that takes an object's ObjectMeta with its Put
// (the vault client). Find it with As, or use PutWithMeta.
type MetaPutter interface {
	// PutMeta is Put that also reports m.
	PutMeta(ctx context.Context, name string, r io.ReaderAt, size int64, m ObjectMeta) error
}

// PutWithMeta puts an object into s, with m when s takes metadata
// (MetaPutter through every decorator), else as a plain Put.
func PutWithMeta(ctx context.Context, s Store, name string, r io.ReaderAt, size int64, m ObjectMeta) error {
	if mp, ok := As[MetaPutter](s); ok {
		return mp.PutMeta(ctx, name, r, size, m)
	}
	return s.Put(ctx, name, r, size)
}

// The retry and counting decorators pass metadata through; Faulty hides
// it, so its put faults still apply.

// PutMeta implements MetaPutter, retried as Put is.
func (r *Retry) PutMeta(ctx context.Context, name string, rd io.ReaderAt, size int64, m ObjectMeta) error {
	return r.do(ctx, "put", name, func() error { return PutWithMeta(ctx, r.Store, name, rd, size, m) })
}

// PutMeta implements MetaPutter, counted as Put is.
func (c *Counting) PutMeta(ctx context.Context, name string, r io.ReaderAt, size int64, m ObjectMeta) error {
	c.requests.Add(1)
	err := PutWithMeta(ctx, c.Store, name, r, size, m)
	if err == nil {
		c.putBytes.Add(size)
	}
	return err
}
