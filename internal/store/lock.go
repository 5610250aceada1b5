package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// LockMode is an object's write-once retention mode (S3 Object Lock).
type LockMode string

// Lock modes. Under governance a user holding s3:BypassGovernanceRetention
// could still shorten or delete; Coffer never sends that bypass. Under
// compliance nobody can, not even the bucket's root account.
const (
	LockNone       LockMode = ""
	LockGovernance LockMode = "governance"
	LockCompliance LockMode = "compliance"
)

// ParseLockMode parses "governance" or "compliance" ("" and "none" are
// LockNone), for flags.
func ParseLockMode(s string) (LockMode, error) {
	switch strings.ToLower(s) {
	case "", "none", "off":
		return LockNone, nil
	case "governance":
		return LockGovernance, nil
	case "compliance":
		return LockCompliance, nil
	}
	return LockNone, fmt.Errorf("object lock mode %q: want governance or compliance", truncate(s))
}

// Lock is an object's retention: it can be neither deleted nor overwritten
// before Until. The zero Lock is no lock.
type Lock struct {
	Mode  LockMode
	Until time.Time
}

// Active reports whether the lock still holds at now.
func (l Lock) Active(now time.Time) bool { return l.Mode != LockNone && now.Before(l.Until) }

func (l Lock) String() string {
	if l.Mode == LockNone {
		return "no lock"
	}
	return fmt.Sprintf("%s lock until %s", l.Mode, l.Until.UTC().Format(time.RFC3339))
}

// Locker is the optional capability of a store whose objects can carry a
// retention lock (an S3 bucket made with Object Lock). Find it with As.
//
// The garbage collector asks LockInfo when a pack it wants to delete may go
// (a locked object is never deleted: it is scheduled for Until), and keeps
// what retained snapshots still need locked with ExtendLocks.
type Locker interface {
	// PutLocked is Put that gives the new object lock at once (the
	// retention headers of the PUT itself).
	PutLocked(ctx context.Context, name string, r io.ReaderAt, size int64, lock Lock) error
	// LockInfo returns name's lock; an object without one has the zero
	// Lock (not an error). A missing object is ErrNotFound.
	LockInfo(ctx context.Context, name string) (Lock, error)
	// ExtendLock makes name's lock last until lock.Until and says whether
	// it had to. It never shortens: when the lock already runs that long
	// it changes nothing and returns false, nil. An object with a lock
	// keeps its mode; one without gets lock.Mode.
	ExtendLock(ctx context.Context, name string, lock Lock) (extended bool, err error)
}

// ErrLocked is a write or delete refused because the object is under an
// Object Lock retention. It is permanent: retrying before the lock ends
// cannot help, so the caller schedules the delete for when it does.
var ErrLocked = errors.New("object is locked")

// ErrNoObjectLock means the bucket has no Object Lock configuration, so no
// object in it can be locked. Object Lock can only be turned on when a
// bucket is made.
var ErrNoObjectLock = errors.New("the bucket has no object lock configuration")

// LockedError is ErrLocked with the object and, when the store told it,
// when its lock ends.
type LockedError struct {
	Name string
	Lock Lock // zero when the store did not say
	Err  error
}

func (e *LockedError) Error() string {
	msg := e.Name + ": " + ErrLocked.Error()
	if !e.Lock.Until.IsZero() {
		msg += fmt.Sprintf(" until %s (%s retention)", e.Lock.Until.UTC().Format(time.RFC3339), e.Lock.Mode)
	}
	msg += "; it can be deleted once its lock ends"
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }
func (e *LockedError) Unwrap() error        { return e.Err }

// LockInfo returns name's lock in s, or the zero Lock when s cannot lock
// objects at all.
func LockInfo(ctx context.Context, s Store, name string) (Lock, error) {
	l, ok := As[Locker](s)
	if !ok {
		return Lock{}, nil
	}
	return l.LockInfo(ctx, name)
}

// The decorators pass locks through: retried, counted.

// PutLocked implements Locker, retried as Put is.
func (r *Retry) PutLocked(ctx context.Context, name string, rd io.ReaderAt, size int64, lock Lock) error {
	lk, err := lockerOf(r.Store)
	if err != nil {
		return err
	}
	return r.do(ctx, "put", name, func() error { return lk.PutLocked(ctx, name, rd, size, lock) })
}

// LockInfo implements Locker; transient errors are retried.
func (r *Retry) LockInfo(ctx context.Context, name string) (Lock, error) {
	lk, err := lockerOf(r.Store)
	if err != nil {
		return Lock{}, err
	}
	var l Lock
	err = r.do(ctx, "lock info", name, func() error {
		var err error
		l, err = lk.LockInfo(ctx, name)
		return err
	})
	return l, err
}

// ExtendLock implements Locker; transient errors are retried (extending
// twice to the same date is harmless).
func (r *Retry) ExtendLock(ctx context.Context, name string, lock Lock) (bool, error) {
	lk, err := lockerOf(r.Store)
	if err != nil {
		return false, err
	}
	var extended bool
	err = r.do(ctx, "extend lock", name, func() error {
		var err error
		extended, err = lk.ExtendLock(ctx, name, lock)
		return err
	})
	return extended, err
}

// PutLocked implements Locker, counted as Put is.
func (c *Counting) PutLocked(ctx context.Context, name string, r io.ReaderAt, size int64, lock Lock) error {
	lk, err := lockerOf(c.Store)
	if err != nil {
		return err
	}
	c.requests.Add(1)
	err = lk.PutLocked(ctx, name, r, size, lock)
	if err == nil {
		c.putBytes.Add(size)
	}
	return err
}

// LockInfo implements Locker, one request.
func (c *Counting) LockInfo(ctx context.Context, name string) (Lock, error) {
	lk, err := lockerOf(c.Store)
	if err != nil {
		return Lock{}, err
	}
	c.requests.Add(1)
	return lk.LockInfo(ctx, name)
}

// ExtendLock implements Locker, counted as one request (the store may
// need two: it reads the lock first).
func (c *Counting) ExtendLock(ctx context.Context, name string, lock Lock) (bool, error) {
	lk, err := lockerOf(c.Store)
	if err != nil {
		return false, err
	}
	c.requests.Add(1)
	return lk.ExtendLock(ctx, name, lock)
}

// lockerOf is what decorators use to forward: the inner Locker, or an error
// saying the store has none.
func lockerOf(s Store) (Locker, error) {
	lk, ok := As[Locker](s)
	if !ok {
		return nil, &PermanentError{Err: fmt.Errorf("store %s cannot lock objects (Object Lock needs an S3 bucket made with it): %w",
			s.Location(), ErrNoObjectLock)}
	}
	return lk, nil
}
