package store

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
)

// ErrInjected is the transient error Faulty injects.
var ErrInjected = errors.New("injected transient fault")

// Faulty wraps a store and injects faults for tests. Rules are matched in
// order against each operation; a matching rule with Times > 0 fires that many
// times, with Times < 0 forever.
type Faulty struct {
	Store
	mu    sync.Mutex
	rules []*FaultRule
	// Ops counts operations by kind ("put", "get", ...), for assertions.
	ops map[string]int
}

// FaultRule describes one injected fault.
type FaultRule struct {
	Op     string // "put" (PutLocked too), "get", "stat", "list", "delete", "readversioned", "swap", "lockinfo", "extendlock", or "" for any
	Prefix string // object name prefix, "" for any
	Times  int    // how many times to fire; negative is forever
	Skip   int    // let this many matching operations through first
	Err    error  // error to return; ErrInjected when nil
	// AfterBytes, for put and get, lets this many bytes through before
	// failing, so a partly transferred object is exercised.
	AfterBytes int64
}

// NewFaulty wraps s.
func NewFaulty(s Store) *Faulty { return &Faulty{Store: s, ops: map[string]int{}} }

// Add appends a rule.
func (f *Faulty) Add(r FaultRule) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rr := r
	f.rules = append(f.rules, &rr)
}

// Ops returns how many operations of a kind were attempted.
func (f *Faulty) Ops(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops[op]
}

func (f *Faulty) match(op, name string) *FaultRule {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops[op]++
	for _, r := range f.rules {
		if (r.Op == "" || r.Op == op) && strings.HasPrefix(name, r.Prefix) && r.Times != 0 {
			if r.Skip > 0 {
				r.Skip--
				return nil
			}
			if r.Times > 0 {
				r.Times--
			}
			return r
		}
	}
	return nil
}

func (r *FaultRule) err() error {
	if r.Err != nil {
		return r.Err
	}
	return ErrInjected
}

// Put implements Store.
func (f *Faulty) Put(ctx context.Context, name string, rd io.ReaderAt, size int64) error {
	if r := f.match("put", name); r != nil {
		if r.AfterBytes > 0 {
			// Read part of the source, as a broken upload would, then fail.
			buf := make([]byte, min(r.AfterBytes, size))
			_, _ = rd.ReadAt(buf, 0)
		}
		return r.err()
	}
	return f.Store.Put(ctx, name, rd, size)
}

// Get implements Store.
func (f *Faulty) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	if r := f.match("get", name); r != nil {
		if r.AfterBytes > 0 {
			return f.Store.Get(ctx, name, off, length, func(rd io.Reader) error {
				return fn(&failingReader{r: io.LimitReader(rd, r.AfterBytes), err: r.err()})
			})
		}
		return r.err()
	}
	return f.Store.Get(ctx, name, off, length, fn)
}

// Stat implements Store.
func (f *Faulty) Stat(ctx context.Context, name string) (Info, error) {
	if r := f.match("stat", name); r != nil {
		return Info{}, r.err()
	}
	return f.Store.Stat(ctx, name)
}

// List implements Store.
func (f *Faulty) List(ctx context.Context, prefix string, fn func(Info) error) error {
	if r := f.match("list", prefix); r != nil {
		return r.err()
	}
	return f.Store.List(ctx, prefix, fn)
}

// Delete implements Store.
func (f *Faulty) Delete(ctx context.Context, name string) error {
	if r := f.match("delete", name); r != nil {
		return r.err()
	}
	return f.Store.Delete(ctx, name)
}

type failingReader struct {
	r   io.Reader
	err error
}

func (fr *failingReader) Read(p []byte) (int, error) {
	n, err := fr.r.Read(p)
	if err == io.EOF {
		return n, fr.err
	}
	return n, err
}

// Unwrap implements Wrapper.
func (f *Faulty) Unwrap() Store { return f.Store }

// ReadVersioned implements Swapper (op "readversioned"), when the wrapped
// store is one.
func (f *Faulty) ReadVersioned(ctx context.Context, name string, max int64) ([]byte, string, error) {
	sw, err := swapperOf(f.Store)
	if err != nil {
		return nil, "", err
	}
	if r := f.match("readversioned", name); r != nil {
		return nil, "", r.err()
	}
	return sw.ReadVersioned(ctx, name, max)
}

// Swap implements Swapper (op "swap"), when the wrapped store is one. A rule
// with AfterBytes > 0 applies the swap and then fails, as a lost reply does.
func (f *Faulty) Swap(ctx context.Context, name string, b []byte, ifVersion string) (string, error) {
	sw, err := swapperOf(f.Store)
	if err != nil {
		return "", err
	}
	if r := f.match("swap", name); r != nil {
		if r.AfterBytes > 0 {
			if _, err := sw.Swap(ctx, name, b, ifVersion); err != nil {
				return "", err
			}
		}
		return "", r.err()
	}
	return sw.Swap(ctx, name, b, ifVersion)
}

// PutLocked implements Locker (op "put", as Put), when the wrapped store
// is one.
func (f *Faulty) PutLocked(ctx context.Context, name string, rd io.ReaderAt, size int64, lock Lock) error {
	lk, err := lockerOf(f.Store)
	if err != nil {
		return err
	}
	if r := f.match("put", name); r != nil {
		return r.err()
	}
	return lk.PutLocked(ctx, name, rd, size, lock)
}

// LockInfo implements Locker (op "lockinfo").
func (f *Faulty) LockInfo(ctx context.Context, name string) (Lock, error) {
	lk, err := lockerOf(f.Store)
	if err != nil {
		return Lock{}, err
	}
	if r := f.match("lockinfo", name); r != nil {
		return Lock{}, r.err()
	}
	return lk.LockInfo(ctx, name)
}

// ExtendLock implements Locker (op "extendlock"). A rule with AfterBytes
// > 0 extends and then fails, as a lost reply does.
func (f *Faulty) ExtendLock(ctx context.Context, name string, lock Lock) (bool, error) {
	lk, err := lockerOf(f.Store)
	if err != nil {
		return false, err
	}
	if r := f.match("extendlock", name); r != nil {
		if r.AfterBytes > 0 {
			if _, err := lk.ExtendLock(ctx, name, lock); err != nil {
				return false, err
			}
		}
		return false, r.err()
	}
	return lk.ExtendLock(ctx, name, lock)
}
