package store

import "context"

// Wrapper is implemented by decorators, so that optional interfaces of the
// store they wrap can be found with As.
type Wrapper interface {
	Unwrap() Store
}

// As finds an optional capability T of s (Swapper, DeferredPutter,
// TempCleaner, OrderedLister, …), the one way every caller does. s offers T
// when it implements T and, if it is a decorator (Wrapper), the store it
// wraps offers T too. A decorator that does not implement T hides it: it
// may override the very path T bypasses (a fault-injecting decorator hides
// the deferred put of the store below, so its faults still apply). So a
// decorator that should pass a capability through forwards it explicitly.
func As[T any](s Store) (T, bool) {
	var zero T
	t, has := s.(T)
	if !has {
		return zero, false
	}
	if w, wraps := s.(Wrapper); wraps {
		if _, below := As[T](w.Unwrap()); !below {
			return zero, false
		}
	}
	return t, true
}

// The decorators pass temporary-file cleanup through: none of them changes
// what it does.

// RemoveStaleTemp implements TempCleaner.
func (r *Retry) RemoveStaleTemp(ctx context.Context) (TempReport, error) {
	return RemoveStaleTemp(ctx, r.Store)
}

// RemoveStaleTemp implements TempCleaner.
func (c *Counting) RemoveStaleTemp(ctx context.Context) (TempReport, error) {
	return RemoveStaleTemp(ctx, c.Store)
}

// RemoveStaleTemp implements TempCleaner.
func (f *Faulty) RemoveStaleTemp(ctx context.Context) (TempReport, error) {
	return RemoveStaleTemp(ctx, f.Store)
}
