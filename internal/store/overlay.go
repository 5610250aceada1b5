package store

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Overlay is two stores seen as one: writes go to the top store, reads
// look in the top store first and then in the base. A seed export writes
// its new objects into the seed directory (top) while it reads the
// tenant's repository in the vault (base).
//
// Its guarantees are Store's, with "the object exists" meaning in either
// store, except that Put is create-only within the top store alone: an
// object the base holds is not looked for first (content-named objects
// hold the same bytes wherever they are, and the writer knows from its
// index what the base holds). List calls fn once per name, the top's
// first. Delete removes from the top only; the base is never written.
//
// It offers the top store's deferred puts and temporary-file cleanup and
// no other capability of either store (no Swapper, no object metadata): a
// capability of the base would reach past the top. The one exception is
// asked for: WithSessions adds the base's upload sessions.
type Overlay struct {
	top, base Store
}

// NewOverlay returns top over base. Close closes both.
func NewOverlay(top, base Store) *Overlay { return &Overlay{top: top, base: base} }

// Top returns the store writes go to.
func (o *Overlay) Top() Store { return o.top }

// Base returns the store below.
func (o *Overlay) Base() Store { return o.base }

// Put implements Store: into the top store.
func (o *Overlay) Put(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	return o.top.Put(ctx, name, r, size)
}

// PutDeferred implements DeferredPutter: into the top store.
func (o *Overlay) PutDeferred(ctx context.Context, name string, r io.ReaderAt, size int64) (func(context.Context) error, error) {
	return PutDeferred(ctx, o.top, name, r, size)
}

// DefersPuts implements DeferredPutter.
func (o *Overlay) DefersPuts() bool { return DefersPuts(o.top) }

// RemoveStaleTemp implements TempCleaner for the top store.
func (o *Overlay) RemoveStaleTemp(ctx context.Context) (TempReport, error) {
	return RemoveStaleTemp(ctx, o.top)
}

// Get implements Store: from the top store, else from the base.
func (o *Overlay) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	err := o.top.Get(ctx, name, off, length, fn)
	if errors.Is(err, ErrNotFound) {
		return o.base.Get(ctx, name, off, length, fn)
	}
	return err
}

// Stat implements Store: the top store's object, else the base's.
func (o *Overlay) Stat(ctx context.Context, name string) (Info, error) {
	i, err := o.top.Stat(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return o.base.Stat(ctx, name)
	}
	return i, err
}

// List implements Store: the top store's objects, then those of the base
// the top does not hold.
func (o *Overlay) List(ctx context.Context, prefix string, fn func(Info) error) error {
	if err := ValidPrefix(prefix); err != nil {
		return err
	}
	seen := map[string]struct{}{}
	err := o.top.List(ctx, prefix, func(i Info) error {
		seen[i.Name] = struct{}{}
		return fn(i)
	})
	if err != nil {
		return err
	}
	return o.base.List(ctx, prefix, func(i Info) error {
		if _, dup := seen[i.Name]; dup {
			return nil
		}
		return fn(i)
	})
}

// Delete implements Store: from the top store only.
func (o *Overlay) Delete(ctx context.Context, name string) error {
	return o.top.Delete(ctx, name)
}

// Location implements Store.
func (o *Overlay) Location() string {
	return fmt.Sprintf("%s over %s", o.top.Location(), o.base.Location())
}

// Close implements Store: it closes both stores.
func (o *Overlay) Close() error {
	return errors.Join(o.top.Close(), o.base.Close())
}

// WithSessions returns the overlay with the upload sessions of its base,
// when the base has them (else o itself): an export deduplicates against
// the base's packs while it writes elsewhere, so the base's garbage
// collector must know that it runs, keep the packs it may reuse, and tell
// it which packs not to use, as for any backup.
func (o *Overlay) WithSessions() Store {
	us, ok := As[UploadSessions](o.base)
	if !ok {
		return o
	}
	return &sessionOverlay{Overlay: o, us: us}
}

// sessionOverlay is an Overlay with its base's upload sessions.
type sessionOverlay struct {
	*Overlay
	us UploadSessions
}

// BeginUpload implements UploadSessions with the base's.
func (s *sessionOverlay) BeginUpload(ctx context.Context) (*UploadSession, error) {
	return s.us.BeginUpload(ctx)
}
