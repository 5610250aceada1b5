package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
)

// blindSwapper honours no condition: every Swap overwrites, as an
// S3-compatible store that ignores If-Match and If-None-Match would.
type blindSwapper struct{ *store.Local }

func (b blindSwapper) Swap(ctx context.Context, name string, p []byte, _ string) (string, error) {
	_, v, err := b.Local.ReadVersioned(ctx, name, 1<<20)
	if errors.Is(err, store.ErrNotFound) {
		v = ""
	} else if err != nil {
		return "", err
	}
	return b.Local.Swap(ctx, name, p, v)
}

// createOnlySwapper honours If-None-Match but ignores a wrong If-Match.
type createOnlySwapper struct{ blindSwapper }

func (c createOnlySwapper) Swap(ctx context.Context, name string, p []byte, ifVersion string) (string, error) {
	if ifVersion == "" {
		return c.Local.Swap(ctx, name, p, "")
	}
	return c.blindSwapper.Swap(ctx, name, p, ifVersion)
}

func probeLeftovers(t *testing.T, s store.Store) []string {
	t.Helper()
	var left []string
	if err := s.List(t.Context(), store.ProbePrefix, func(i store.Info) error { left = append(left, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	return left
}

func TestProbeConditional(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(*store.Local) store.Store
		want string // "" means the probe passes
	}{
		{"local", func(l *store.Local) store.Store { return l }, ""},
		{"local through retry and counting", func(l *store.Local) store.Store {
			return store.WithRetry(store.NewCounting(l), store.DefaultRetry, nil, nil)
		}, ""},
		{"ignores every condition", func(l *store.Local) store.Store { return blindSwapper{l} }, "create-only write over an existing object succeeded"},
		{"ignores a wrong version", func(l *store.Local) store.Store { return createOnlySwapper{blindSwapper{l}} }, "write with a wrong version succeeded"},
		{"no swapper", func(l *store.Local) store.Store { return plainStore{l} }, "has no compare-and-swap support"},
		{"no swapper under a decorator", func(l *store.Local) store.Store { return store.NewCounting(plainStore{l}) }, "has no compare-and-swap support"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLocal(t)
			s := tc.wrap(l)
			err := store.ProbeConditional(t.Context(), s)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("probe failed on a store that honours conditions: %v", err)
				}
			} else {
				if !errors.Is(err, store.ErrNoConditionalWrites) {
					t.Fatalf("probe error %v; want ErrNoConditionalWrites", err)
				}
				if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), l.Location()) {
					t.Errorf("probe error %q does not say %q and name the store", err, tc.want)
				}
			}
			if left := probeLeftovers(t, l); len(left) != 0 {
				t.Errorf("the probe left %v behind", left)
			}
		})
	}
}

func TestProbeConditionalReportsStoreErrors(t *testing.T) {
	l := newLocal(t)
	f := store.NewFaulty(l)
	f.Add(store.FaultRule{Op: "delete", Times: 1, Err: errors.New("disk on fire")})
	err := store.ProbeConditional(t.Context(), f)
	if err == nil || errors.Is(err, store.ErrNoConditionalWrites) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("probe error %v; want the delete failure", err)
	}
}

func TestProbeConditionalS3(t *testing.T) {
	srv := minioServer(t)
	s := openURL(t, srv.NewBucket(t))
	if err := store.ProbeConditional(t.Context(), s); err != nil {
		t.Fatalf("probe failed on MinIO: %v", err)
	}
	if left := probeLeftovers(t, s); len(left) != 0 {
		t.Errorf("the probe left %v behind", left)
	}
}
