package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrReadOnly is returned by the writes of a read-only view.
var ErrReadOnly = errors.New("read-only view of the store")

// ReadOnlySub is the objects of st under prefix, seen as a store of their
// own (names without the prefix), read-only: the vault reads a tenant's
// repository through it (restores, drills, instant access) and can never
// change it.
func ReadOnlySub(st Store, prefix string) (Store, error) {
	if err := ValidPrefix(prefix); err != nil || !strings.HasSuffix(prefix, "/") {
		return nil, fmt.Errorf("store view prefix %q: want a valid prefix ending in /", prefix)
	}
	return &sub{st: st, prefix: prefix}, nil
}

type sub struct {
	st     Store
	prefix string
}

func (s *sub) Put(_ context.Context, name string, _ io.ReaderAt, _ int64) error {
	return fmt.Errorf("writing %s: %w", name, ErrReadOnly)
}

func (s *sub) Delete(_ context.Context, name string) error {
	return fmt.Errorf("deleting %s: %w", name, ErrReadOnly)
}

func (s *sub) Get(ctx context.Context, name string, off, length int64, fn func(io.Reader) error) error {
	return s.st.Get(ctx, s.prefix+name, off, length, fn)
}

func (s *sub) Stat(ctx context.Context, name string) (Info, error) {
	i, err := s.st.Stat(ctx, s.prefix+name)
	i.Name = strings.TrimPrefix(i.Name, s.prefix)
	return i, err
}

func (s *sub) List(ctx context.Context, prefix string, fn func(Info) error) error {
	return s.st.List(ctx, s.prefix+prefix, func(i Info) error {
		i.Name = strings.TrimPrefix(i.Name, s.prefix)
		return fn(i)
	})
}

func (s *sub) Location() string { return s.st.Location() + "/" + strings.TrimSuffix(s.prefix, "/") }

// Close does not close the store below, which the view does not own.
func (s *sub) Close() error { return nil }
