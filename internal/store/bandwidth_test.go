package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/store"
)

var bwT0 = time.Date(2026, 3, 2, 7, 0, 0, 0, time.UTC)

func localStore(t testing.TB) store.Store {
	t.Helper()
	l, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// A put of 4 MB at 1 MB/s takes four seconds of the clock, less one bucket.
func TestBandwidthPutHoldsLimit(t *testing.T) {
	c := clocktest.New(bwT0)
	bw := store.NewBandwidth(c, store.ConstantLimits(store.Limits{Put: 1e6}))
	s := store.WithBandwidth(localStore(t), bw)
	data := payload(4e6)
	if err := s.Put(context.Background(), "data/00/"+hex64("a"), bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	got := c.Now().Sub(bwT0)
	if got < 3900*time.Millisecond || got > 4100*time.Millisecond {
		t.Fatalf("4 MB at 1 MB/s took %v of the clock, want about 4s", got)
	}
	var back bytes.Buffer
	if err := s.Get(context.Background(), "data/00/"+hex64("a"), 0, -1, func(r io.Reader) error { _, err := io.Copy(&back, r); return err }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Bytes(), data) {
		t.Fatal("the bytes read back differ from those put")
	}
	if c.Now().Sub(bwT0) != got {
		t.Fatal("a get was metered though only puts are limited")
	}
}

// The limit changes at a window's boundary: 2 MB at 1 MB/s, then 8 MB at
// 4 MB/s, four seconds in all.
func TestBandwidthWindowChange(t *testing.T) {
	c := clocktest.New(bwT0)
	bw := store.NewBandwidth(c, func(now time.Time) store.Limits {
		if now.Before(bwT0.Add(2 * time.Second)) {
			return store.Limits{Put: 1e6, Get: 1e6}
		}
		return store.Limits{Put: 4e6, Get: 4e6}
	})
	s := store.WithBandwidth(localStore(t), bw)
	data := payload(10e6)
	if err := s.Put(context.Background(), "data/00/"+hex64("b"), bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	got := c.Now().Sub(bwT0)
	if got < 3900*time.Millisecond || got > 4200*time.Millisecond {
		t.Fatalf("2 MB at 1 MB/s then 8 MB at 4 MB/s took %v of the clock, want about 4s", got)
	}
	start := c.Now()
	if err := s.Get(context.Background(), "data/00/"+hex64("b"), 0, 4e6, func(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }); err != nil {
		t.Fatal(err)
	}
	if d := c.Now().Sub(start); d < 900*time.Millisecond || d > 1100*time.Millisecond {
		t.Fatalf("a 4 MB get at 4 MB/s took %v of the clock, want about 1s", d)
	}
}

// Several uploads at once share one limit (on the real clock: a fake one
// would add up the waits of the uploads sleeping side by side).
func TestBandwidthSharedByConcurrentPuts(t *testing.T) {
	bw := store.NewBandwidth(clock.Real, store.ConstantLimits(store.Limits{Put: 4e6}))
	s := store.WithBandwidth(localStore(t), bw)
	data := payload(1e6)
	sw := clock.Start()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Put(context.Background(), "data/00/"+hex64(string(rune('c'+i))), bytes.NewReader(data), int64(len(data)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// 4 MB at 4 MB/s: one second less the first bucket.
	if d := sw.Elapsed(); d < 950*time.Millisecond {
		t.Fatalf("four 1 MB puts at once under a 4 MB/s limit took %v, want about 1s: the limit is not shared", d)
	}
}

// Cancelling the context stops a put waiting for bandwidth.
func TestBandwidthCancel(t *testing.T) {
	bw := store.NewBandwidth(clock.Real, store.ConstantLimits(store.Limits{Put: 10e3}))
	s := store.WithBandwidth(localStore(t), bw)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	data := payload(1e6)
	err := s.Put(ctx, "data/00/"+hex64("z"), bytes.NewReader(data), int64(len(data)))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put under a cancelled context: %v, want the context's error", err)
	}
}

// The decorator passes the capabilities of the store below through.
func TestBandwidthPassesCapabilities(t *testing.T) {
	s := store.WithBandwidth(localStore(t), store.NewBandwidth(nil, store.ConstantLimits(store.Limits{})))
	if _, ok := store.As[store.TempCleaner](s); !ok {
		t.Error("TempCleaner hidden")
	}
	if _, ok := store.As[store.DeferredPutter](s); !ok {
		t.Error("DeferredPutter hidden")
	}
}

func hex64(seed string) string {
	const hexd = "0123456789abcdef"
	b := make([]byte, 64)
	for i := range b {
		b[i] = hexd[(int(seed[0])+i)%16]
	}
	return string(b)
}

// pieceLog is a store that reads put bodies in small pieces and logs when
// (on the clock) each piece passed.
type pieceLog struct {
	store.Store
	clock *clocktest.Clock
	at    []time.Time
	n     []int
}

func (p *pieceLog) Put(_ context.Context, _ string, r io.ReaderAt, size int64) error {
	buf := make([]byte, 8<<10)
	for off := int64(0); off < size; {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off)
		p.at, p.n = append(p.at, p.clock.Now()), append(p.n, n)
		off += int64(n)
		if err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}

// Over any second, the bytes that pass exceed the limit in force by at
// most one bucket, before and after a window lowers it.
func TestBandwidthNeverBursts(t *testing.T) {
	c := clocktest.New(bwT0)
	edge := bwT0.Add(3 * time.Second)
	limitAt := func(at time.Time) int64 {
		if at.Before(edge) {
			return 4e6
		}
		return 1e6
	}
	log := &pieceLog{clock: c}
	s := store.WithBandwidth(log, store.NewBandwidth(c, func(at time.Time) store.Limits { return store.Limits{Put: limitAt(at)} }))
	for range 20 {
		if err := s.Put(context.Background(), "x", store.Bytes(payload(1e6)), 1e6); err != nil {
			t.Fatal(err)
		}
	}
	for i, start := range log.at {
		end := start.Add(time.Second)
		var sum int64
		for j := i; j < len(log.at) && log.at[j].Before(end); j++ {
			sum += int64(log.n[j])
		}
		// The highest limit the second touches, plus one bucket.
		allowed := max(limitAt(start), limitAt(end)) + store.MaxBurst
		if sum > allowed {
			t.Fatalf("%d bytes in the second from +%v, over the %d allowed", sum, start.Sub(bwT0), allowed)
		}
	}
	if d := c.Now().Sub(bwT0); d < 10500*time.Millisecond || d > 11500*time.Millisecond {
		t.Errorf("20 MB took %v: 12 MB at 4 MB/s then 8 MB at 1 MB/s is 11s", d)
	}
}
