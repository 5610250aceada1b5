package storetest

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/store"
)

// Locking is a fake of a bucket with Object Lock for tests that need no
// MinIO (garbage collection, retention): a local directory whose objects
// carry locks kept in memory, under S3's rules judged on an injected
// clock. A locked object cannot be deleted before its lock ends (Delete
// fails with a *store.LockedError), a lock is never shortened, and Put is
// create-only as every store's is. It records the most lock extensions in
// flight at once.
type Locking struct {
	*store.Local
	clk   clock.Clock
	mu    sync.Mutex
	locks map[string]store.Lock

	inFlight, maxInFlight atomic.Int32
}

// NewLocking makes an empty Locking in a temporary directory of tb.
func NewLocking(tb testing.TB, clk clock.Clock) *Locking {
	tb.Helper()
	l, err := store.OpenLocal(tb.TempDir(), true)
	if err != nil {
		tb.Fatal(err)
	}
	return &Locking{Local: l, clk: clock.Or(clk), locks: map[string]store.Lock{}}
}

// MaxExtending returns the most ExtendLock calls that were in flight at
// once, and starts counting again.
func (m *Locking) MaxExtending() int {
	return int(m.maxInFlight.Swap(0))
}

// PutLocked implements store.Locker.
func (m *Locking) PutLocked(ctx context.Context, name string, r io.ReaderAt, size int64, lock store.Lock) error {
	if err := m.Local.Put(ctx, name, r, size); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if lock.Mode != store.LockNone {
		m.locks[name] = store.Lock{Mode: lock.Mode, Until: lock.Until.UTC()}
	}
	return nil
}

// LockInfo implements store.Locker.
func (m *Locking) LockInfo(ctx context.Context, name string) (store.Lock, error) {
	if _, err := m.Local.Stat(ctx, name); err != nil {
		return store.Lock{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.locks[name], nil
}

// ExtendLock implements store.Locker.
func (m *Locking) ExtendLock(ctx context.Context, name string, lock store.Lock) (bool, error) {
	n := m.inFlight.Add(1)
	defer m.inFlight.Add(-1)
	for old := m.maxInFlight.Load(); n > old && !m.maxInFlight.CompareAndSwap(old, n); old = m.maxInFlight.Load() {
	}
	// Let concurrent calls overlap, as requests to a server do.
	time.Sleep(time.Millisecond)
	cur, err := m.LockInfo(ctx, name)
	if err != nil || !lock.Until.After(cur.Until) {
		return false, err
	}
	if cur.Mode != store.LockNone {
		lock.Mode = cur.Mode
	}
	if lock.Mode == store.LockNone {
		return false, &store.PermanentError{Err: errors.New(name + ": cannot lock it without a mode")}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.locks[name] = store.Lock{Mode: lock.Mode, Until: lock.Until.UTC()}
	return true, nil
}

// Delete implements store.Store: a locked object is refused until its
// lock ends.
func (m *Locking) Delete(ctx context.Context, name string) error {
	m.mu.Lock()
	l := m.locks[name]
	m.mu.Unlock()
	if l.Active(m.clk.Now()) {
		return &store.LockedError{Name: name, Lock: l}
	}
	if err := m.Local.Delete(ctx, name); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.locks, name)
	m.mu.Unlock()
	return nil
}
