package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/cofferhq/coffer/internal/clock"
)

// LockPolicy says which objects ObjectLock locks, how and for how long.
type LockPolicy struct {
	Mode LockMode // governance or compliance
	// Retention is how long a new object stays locked. It must exceed the
	// garbage collector's grace period plus the longest gap between two
	// runs of ExtendLocks, or a needed object's lock lapses in between.
	Retention time.Duration
	// Match reports whether an object is locked when it is put. It must
	// never match a document that is replaced (Swap) or that must be
	// deleted at once; the caller owns the layout of names (the vault's
	// is vault.LockedObject).
	Match func(name string) bool
	Clock clock.Clock // nil: the real clock
}

// Validate checks the policy.
func (p LockPolicy) Validate() error {
	switch {
	case p.Mode != LockGovernance && p.Mode != LockCompliance:
		return fmt.Errorf("object lock policy: mode %q: want governance or compliance", p.Mode)
	case p.Retention < time.Second:
		return fmt.Errorf("object lock policy: retention %s is too short", p.Retention)
	case p.Match == nil:
		return errors.New("object lock policy: Match is required")
	}
	return nil
}

// Lock is the lock an object put now gets: Mode, until now plus Retention.
func (p LockPolicy) Lock() Lock {
	return Lock{Mode: p.Mode, Until: clock.Or(p.Clock).Now().Add(p.Retention)}
}

// ObjectLock wraps a store that can lock objects (a Locker) and puts the
// objects its policy matches with a retention lock. Everything else passes
// through; a Swap of a matched name is refused (a locked document could
// never be replaced). It offers Locker, Swapper and OrderedLister when the
// store below does, and hides DeferredPutter and MetaPutter, whose puts
// would bypass the lock.
type ObjectLock struct {
	Store
	policy LockPolicy
	locker Locker
}

// WithObjectLock wraps s, which must offer Locker (found with As).
func WithObjectLock(s Store, p LockPolicy) (*ObjectLock, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	lk, err := lockerOf(s)
	if err != nil {
		return nil, err
	}
	return &ObjectLock{Store: s, policy: p, locker: lk}, nil
}

// Policy returns the policy the decorator applies.
func (o *ObjectLock) Policy() LockPolicy { return o.policy }

// Unwrap implements Wrapper.
func (o *ObjectLock) Unwrap() Store { return o.Store }

// Put implements Store: a matched name is put with the policy's lock.
func (o *ObjectLock) Put(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	if o.policy.Match(name) {
		return o.locker.PutLocked(ctx, name, r, size, o.policy.Lock())
	}
	return o.Store.Put(ctx, name, r, size)
}

// PutLocked implements Locker.
func (o *ObjectLock) PutLocked(ctx context.Context, name string, r io.ReaderAt, size int64, lock Lock) error {
	return o.locker.PutLocked(ctx, name, r, size, lock)
}

// LockInfo implements Locker.
func (o *ObjectLock) LockInfo(ctx context.Context, name string) (Lock, error) {
	return o.locker.LockInfo(ctx, name)
}

// ExtendLock implements Locker.
func (o *ObjectLock) ExtendLock(ctx context.Context, name string, lock Lock) (bool, error) {
	return o.locker.ExtendLock(ctx, name, lock)
}

// ReadVersioned implements Swapper.
func (o *ObjectLock) ReadVersioned(ctx context.Context, name string, max int64) ([]byte, string, error) {
	sw, err := swapperOf(o.Store)
	if err != nil {
		return nil, "", err
	}
	return sw.ReadVersioned(ctx, name, max)
}

// Swap implements Swapper, refusing names the policy locks.
func (o *ObjectLock) Swap(ctx context.Context, name string, b []byte, ifVersion string) (string, error) {
	if o.policy.Match(name) {
		return "", &PermanentError{Err: fmt.Errorf("%s: a document that is replaced must not live under a locked prefix", name)}
	}
	sw, err := swapperOf(o.Store)
	if err != nil {
		return "", err
	}
	return sw.Swap(ctx, name, b, ifVersion)
}

// ListFrom implements OrderedLister.
func (o *ObjectLock) ListFrom(ctx context.Context, prefix, after string, fn func(Info) error) error {
	ol, ok := As[OrderedLister](o.Store)
	if !ok {
		return &PermanentError{Err: fmt.Errorf("store %s cannot list in order", o.Location())}
	}
	return ol.ListFrom(ctx, prefix, after, fn)
}

// LockPolicyOf returns the policy of the ObjectLock decorator in s's chain
// of decorators, if there is one.
func LockPolicyOf(s Store) (LockPolicy, bool) {
	for s != nil {
		if o, ok := s.(*ObjectLock); ok {
			return o.policy, true
		}
		w, ok := s.(Wrapper)
		if !ok {
			return LockPolicy{}, false
		}
		s = w.Unwrap()
	}
	return LockPolicy{}, false
}

// ExtendReport is what ExtendLocks did.
type ExtendReport struct {
	Extended int      // locks moved to the new date
	Current  int      // already locked that long: read, not written
	Missing  []string // names that do not exist (sorted as given)
}

// ExtendLocks makes the lock of every name in s last until until (which
// must lie ahead, by the policy's clock), with at
// most parallel requests at once (at least 1). An object already locked
// that long costs one read and no write, so a re-run is cheap. Objects
// without a lock get the mode of s's ObjectLock policy. Missing objects are
// reported, not errors; the first other error stops the batch and is
// returned with what was done so far.
func ExtendLocks(ctx context.Context, s Store, names []string, until time.Time, parallel int) (ExtendReport, error) {
	lk, err := lockerOf(s)
	if err != nil {
		return ExtendReport{}, err
	}
	policy, _ := LockPolicyOf(s)
	if now := clock.Or(policy.Clock).Now(); !until.After(now) {
		return ExtendReport{}, fmt.Errorf("extending locks to %s: that is not in the future (now %s)",
			until.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	lock := Lock{Mode: policy.Mode, Until: until}
	var mu sync.Mutex
	var rep ExtendReport
	missing := make([]bool, len(names))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(parallel, 1))
	for i, name := range names {
		g.Go(func() error {
			extended, err := lk.ExtendLock(gctx, name, lock)
			if errors.Is(err, ErrNotFound) {
				missing[i] = true
				return nil
			}
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if extended {
				rep.Extended++
			} else {
				rep.Current++
			}
			return nil
		})
	}
	err = g.Wait()
	for i, m := range missing {
		if m {
			rep.Missing = append(rep.Missing, names[i])
		}
	}
	return rep, err
}
