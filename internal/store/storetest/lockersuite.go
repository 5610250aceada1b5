package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// LockerEnv is a store that can lock objects, as RunLocker tests it.
type LockerEnv struct {
	Store store.Store // empty; offers store.Locker (found with store.As)
	Mode  store.LockMode
	Now   func() time.Time // the store's clock
	// Wait returns once the store's clock has passed t: a fake advances
	// its clock, a real server is waited for.
	Wait func(t time.Time)
}

// RunLocker checks that the stores newEnv makes keep Object Lock's rules
// as store.Locker states them: a lock set by the put holds against Delete
// (a permanent ErrLocked saying until when) and against a second Put
// until it ends, after which Delete works; ExtendLock never shortens and
// says whether it extended; an unlocked object gets the mode asked for; a
// missing object is ErrNotFound.
func RunLocker(t *testing.T, newEnv func(t *testing.T) LockerEnv) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e LockerEnv, lk store.Locker)
	}{
		{"Lifecycle", testLockLifecycle},
		{"ExtendNeverShortens", testExtendNeverShortens},
		{"ExtendGivesMode", testExtendGivesMode},
		{"Missing", testLockMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			lk, ok := store.As[store.Locker](e.Store)
			if !ok {
				t.Fatalf("store %s offers no Locker", e.Store.Location())
			}
			tc.fn(t, e, lk)
		})
	}
}

func testLockLifecycle(t *testing.T, e LockerEnv, lk store.Locker) {
	ctx := t.Context()
	until := e.Now().Add(2 * time.Second)
	if err := lk.PutLocked(ctx, "locked/a", store.Bytes("abc"), 3, store.Lock{Mode: e.Mode, Until: until}); err != nil {
		t.Fatalf("PutLocked: %v", err)
	}
	if err := e.Store.Put(ctx, "plain/b", store.Bytes("b"), 1); err != nil {
		t.Fatal(err)
	}
	l, err := lk.LockInfo(ctx, "locked/a")
	if err != nil || l.Mode != e.Mode || l.Until.Before(until) || l.Until.After(until.Add(time.Second)) {
		t.Fatalf("LockInfo = %v, %v; want %s until %s (to the second)", l, err, e.Mode, until)
	}
	if l, err := lk.LockInfo(ctx, "plain/b"); err != nil || l != (store.Lock{}) {
		t.Errorf("LockInfo of an unlocked object = %v, %v; want the zero Lock", l, err)
	}
	err = e.Store.Delete(ctx, "locked/a")
	var le *store.LockedError
	if !errors.Is(err, store.ErrLocked) || !store.IsPermanent(err) || !errors.As(err, &le) || le.Lock.Until.IsZero() {
		t.Fatalf("Delete of a locked object = %v; want a permanent *LockedError with its date", err)
	}
	if err := e.Store.Put(ctx, "locked/a", store.Bytes("xyz"), 3); !errors.Is(err, store.ErrExists) {
		t.Errorf("Put over a locked object = %v; want ErrExists", err)
	}
	if b, err := store.ReadAll(ctx, e.Store, "locked/a"); err != nil || string(b) != "abc" {
		t.Errorf("the locked object holds %q, %v; want \"abc\"", b, err)
	}
	e.Wait(l.Until)
	if err := e.Store.Delete(ctx, "locked/a"); err != nil {
		t.Fatalf("Delete after the lock ended: %v", err)
	}
	if _, err := e.Store.Stat(ctx, "locked/a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Stat after Delete = %v; want ErrNotFound", err)
	}
}

func testExtendNeverShortens(t *testing.T, e LockerEnv, lk store.Locker) {
	ctx := t.Context()
	now := e.Now().Truncate(time.Second)
	if err := lk.PutLocked(ctx, "locked/a", store.Bytes("a"), 1, store.Lock{Mode: e.Mode, Until: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Hour)
	if ext, err := lk.ExtendLock(ctx, "locked/a", store.Lock{Mode: e.Mode, Until: later}); err != nil || !ext {
		t.Fatalf("ExtendLock to a later date = %v, %v; want extended", ext, err)
	}
	for _, d := range []time.Time{later, now.Add(90 * time.Minute)} {
		if ext, err := lk.ExtendLock(ctx, "locked/a", store.Lock{Mode: e.Mode, Until: d}); err != nil || ext {
			t.Errorf("ExtendLock to %s (not later) = %v, %v; want nothing done", d, ext, err)
		}
	}
	if l, err := lk.LockInfo(ctx, "locked/a"); err != nil || !l.Until.Equal(later) || l.Mode != e.Mode {
		t.Errorf("lock after the extensions = %v, %v; want %s until %s", l, err, e.Mode, later)
	}
}

func testExtendGivesMode(t *testing.T, e LockerEnv, lk store.Locker) {
	ctx := t.Context()
	if err := e.Store.Put(ctx, "plain/a", store.Bytes("a"), 1); err != nil {
		t.Fatal(err)
	}
	until := e.Now().Add(time.Hour).Truncate(time.Second)
	if ext, err := lk.ExtendLock(ctx, "plain/a", store.Lock{Mode: e.Mode, Until: until}); err != nil || !ext {
		t.Fatalf("ExtendLock of an unlocked object = %v, %v; want extended", ext, err)
	}
	if l, err := lk.LockInfo(ctx, "plain/a"); err != nil || l.Mode != e.Mode || !l.Until.Equal(until) {
		t.Errorf("lock = %v, %v; want %s until %s", l, err, e.Mode, until)
	}
	if err := e.Store.Delete(ctx, "plain/a"); !errors.Is(err, store.ErrLocked) {
		t.Errorf("Delete of the object locked later = %v; want ErrLocked", err)
	}
}

func testLockMissing(t *testing.T, e LockerEnv, lk store.Locker) {
	ctx := t.Context()
	if _, err := lk.LockInfo(ctx, "locked/none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LockInfo of a missing object = %v; want ErrNotFound", err)
	}
	if _, err := lk.ExtendLock(ctx, "locked/none", store.Lock{Mode: e.Mode, Until: e.Now().Add(time.Hour)}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ExtendLock of a missing object = %v; want ErrNotFound", err)
	}
	if _, err := lk.LockInfo(ctx, "../x"); !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("LockInfo of an invalid name = %v; want ErrInvalidName", err)
	}
}
