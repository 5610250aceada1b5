package store

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"time"
)

// The optional capabilities RateLimit passes through, each waiting on the
// cap of its kind first.

// ReadVersioned implements Swapper (a read).
func (r *RateLimit) ReadVersioned(ctx context.Context, name string, max int64) ([]byte, string, error) {
	sw, err := swapperOf(r.Store)
	if err != nil {
		return nil, "", err
	}
	if err := wait(ctx, r.read); err != nil {
		return nil, "", err
	}
	return sw.ReadVersioned(ctx, name, max)
}

// Swap implements Swapper (a write).
func (r *RateLimit) Swap(ctx context.Context, name string, b []byte, ifVersion string) (string, error) {
	sw, err := swapperOf(r.Store)
	if err != nil {
		return "", err
	}
	if err := wait(ctx, r.write); err != nil {
		return "", err
	}
	return sw.Swap(ctx, name, b, ifVersion)
}

// PutLocked implements Locker (a write).
func (r *RateLimit) PutLocked(ctx context.Context, name string, rd io.ReaderAt, size int64, lock Lock) error {
	lk, err := lockerOf(r.Store)
	if err != nil {
		return err
	}
	if err := wait(ctx, r.write); err != nil {
		return err
	}
	return lk.PutLocked(ctx, name, rd, size, lock)
}

// LockInfo implements Locker (a read).
func (r *RateLimit) LockInfo(ctx context.Context, name string) (Lock, error) {
	lk, err := lockerOf(r.Store)
	if err != nil {
		return Lock{}, err
	}
	if err := wait(ctx, r.read); err != nil {
		return Lock{}, err
	}
	return lk.LockInfo(ctx, name)
}

// ExtendLock implements Locker (a write).
func (r *RateLimit) ExtendLock(ctx context.Context, name string, lock Lock) (bool, error) {
	lk, err := lockerOf(r.Store)
	if err != nil {
		return false, err
	}
	if err := wait(ctx, r.write); err != nil {
		return false, err
	}
	return lk.ExtendLock(ctx, name, lock)
}

// ListFrom implements OrderedLister (reads, as List).
func (r *RateLimit) ListFrom(ctx context.Context, prefix, after string, fn func(Info) error) error {
	ol, ok := As[OrderedLister](r.Store)
	if !ok {
		return &PermanentError{Err: fmt.Errorf("store %s cannot list in order", r.Location())}
	}
	if err := wait(ctx, r.read); err != nil {
		return err
	}
	return ol.ListFrom(ctx, prefix, after, r.pages(ctx, fn))
}

// PutDeferred implements DeferredPutter (a write).
func (r *RateLimit) PutDeferred(ctx context.Context, name string, rd io.ReaderAt, size int64) (func(context.Context) error, error) {
	if err := wait(ctx, r.write); err != nil {
		return nil, err
	}
	return PutDeferred(ctx, r.Store, name, rd, size)
}

// DefersPuts implements DeferredPutter.
func (r *RateLimit) DefersPuts() bool { return DefersPuts(r.Store) }

// PutMeta implements MetaPutter (a write).
func (r *RateLimit) PutMeta(ctx context.Context, name string, rd io.ReaderAt, size int64, m ObjectMeta) error {
	if err := wait(ctx, r.write); err != nil {
		return err
	}
	return PutWithMeta(ctx, r.Store, name, rd, size, m)
}

// RemoveStaleTemp implements TempCleaner (not capped: it is local work).
func (r *RateLimit) RemoveStaleTemp(ctx context.Context) (TempReport, error) {
	return RemoveStaleTemp(ctx, r.Store)
}

// PresignGet implements Presigner: the GET it lets an agent make is a read
// request to the store, so it waits for the read cap like one.
func (r *RateLimit) PresignGet(ctx context.Context, name string, expiry time.Duration) (*url.URL, error) {
	if err := wait(ctx, r.read); err != nil {
		return nil, err
	}
	return presignBelow(ctx, r.Store, name, expiry)
}
