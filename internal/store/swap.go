package store

import (
	"context"
	"errors"
	"fmt"
)

// ErrConflict means a conditional write lost: the object changed (or was
// created, or vanished) since the caller read it. It is permanent for the
// retry layer; the caller re-reads and decides again.
var ErrConflict = errors.New("object changed since it was read")

// Swapper is the compare-and-swap extension for small mutable objects (the
// vault's own state; repositories never use it). Versions are opaque
// strings that only the store that issued them understands.
//
// Consistency every implementation must provide: Swap is atomic with respect
// to every other Swap on the same name, across all processes (and replicas)
// that share the store; of two Swaps with the same ifVersion at most one
// succeeds. ReadVersioned returns bytes and the version of exactly those
// bytes.
type Swapper interface {
	// ReadVersioned returns the whole object and its version. It fails with
	// ErrNotFound when the object is missing, and with a permanent error
	// when it is larger than max bytes.
	ReadVersioned(ctx context.Context, name string, max int64) (b []byte, version string, err error)
	// Swap stores b under name if the current version is ifVersion, or, with
	// ifVersion == "", if name is missing. Otherwise it fails with
	// ErrConflict and the stored object is unchanged. It returns the new
	// version.
	Swap(ctx context.Context, name string, b []byte, ifVersion string) (version string, err error)
}

// swapperOf is what decorators use to forward: the inner Swapper, or an
// error saying the store has none.
func swapperOf(s Store) (Swapper, error) {
	sw, ok := As[Swapper](s)
	if !ok {
		return nil, &PermanentError{Err: fmt.Errorf("store %s does not support conditional writes", s.Location())}
	}
	return sw, nil
}

// tooLarge is the error ReadVersioned returns for an object above max.
func tooLarge(name string, max int64) error {
	return &PermanentError{Err: fmt.Errorf("%s: object is larger than the %d bytes allowed", name, max)}
}

// Unwrap implements Wrapper.
func (r *Retry) Unwrap() Store { return r.Store }

// ReadVersioned implements Swapper; transient errors are retried.
func (r *Retry) ReadVersioned(ctx context.Context, name string, max int64) ([]byte, string, error) {
	sw, err := swapperOf(r.Store)
	if err != nil {
		return nil, "", err
	}
	var b []byte
	var v string
	err = r.do(ctx, "read", name, func() error {
		var err error
		b, v, err = sw.ReadVersioned(ctx, name, max)
		return err
	})
	return b, v, err
}

// Swap implements Swapper; transient errors are retried. A Swap whose reply
// was lost and that is retried fails with ErrConflict although it was
// applied: callers re-read and must find their change already there (every
// update function is idempotent).
func (r *Retry) Swap(ctx context.Context, name string, b []byte, ifVersion string) (string, error) {
	sw, err := swapperOf(r.Store)
	if err != nil {
		return "", err
	}
	var v string
	err = r.do(ctx, "swap", name, func() error {
		var err error
		v, err = sw.Swap(ctx, name, b, ifVersion)
		return err
	})
	return v, err
}

// Unwrap implements Wrapper.
func (c *Counting) Unwrap() Store { return c.Store }

// ReadVersioned implements Swapper.
func (c *Counting) ReadVersioned(ctx context.Context, name string, max int64) ([]byte, string, error) {
	sw, err := swapperOf(c.Store)
	if err != nil {
		return nil, "", err
	}
	c.requests.Add(1)
	b, v, err := sw.ReadVersioned(ctx, name, max)
	c.getBytes.Add(int64(len(b)))
	return b, v, err
}

// Swap implements Swapper.
func (c *Counting) Swap(ctx context.Context, name string, b []byte, ifVersion string) (string, error) {
	sw, err := swapperOf(c.Store)
	if err != nil {
		return "", err
	}
	c.requests.Add(1)
	v, err := sw.Swap(ctx, name, b, ifVersion)
	if err == nil {
		c.putBytes.Add(int64(len(b)))
	}
	return v, err
}
