package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// RunSwapper checks that the stores newStore makes implement store.Swapper
// as the interface requires: create-only with an empty version, replace only
// at the current version, ErrConflict (permanent) otherwise, and no lost
// update among concurrent writers. newStore is called once per subtest and
// must return an empty store; RunSwapper closes it.
func RunSwapper(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Swapper)
	}{
		{"CreateRead", testSwapCreateRead},
		{"ReadMissing", testSwapReadMissing},
		{"StaleVersion", testSwapStale},
		{"CreateExisting", testSwapCreateExisting},
		{"VersionOfMissing", testSwapVersionOfMissing},
		{"TooLarge", testSwapTooLarge},
		{"InvalidName", testSwapInvalidName},
		{"ConcurrentCounter", func(t *testing.T, s store.Swapper) {
			RaceCounter(t, []store.Swapper{s}, "vault/usage/counter.json", 8, 25)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			sw, ok := store.As[store.Swapper](s)
			if !ok {
				t.Fatalf("%T is not a store.Swapper", s)
			}
			tc.fn(t, sw)
		})
	}
}

func mustSwap(t *testing.T, s store.Swapper, name string, b []byte, ifVersion string) string {
	t.Helper()
	v, err := s.Swap(t.Context(), name, b, ifVersion)
	if err != nil {
		t.Fatalf("Swap(%q, if %q): %v", name, ifVersion, err)
	}
	if v == "" {
		t.Fatalf("Swap(%q) returned an empty version", name)
	}
	return v
}

func expectVersioned(t *testing.T, s store.Swapper, name string, want []byte, wantVersion string) {
	t.Helper()
	b, v, err := s.ReadVersioned(t.Context(), name, 1<<20)
	if err != nil {
		t.Fatalf("ReadVersioned(%q): %v", name, err)
	}
	if !bytes.Equal(b, want) {
		t.Errorf("ReadVersioned(%q) = %q, want %q", name, b, want)
	}
	if v != wantVersion {
		t.Errorf("ReadVersioned(%q) version %q, want %q (the one Swap returned)", name, v, wantVersion)
	}
}

func expectConflict(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("%s: got %v, want ErrConflict", what, err)
	}
	if !store.IsPermanent(err) {
		t.Errorf("%s: ErrConflict is not permanent: %v", what, err)
	}
}

func testSwapCreateRead(t *testing.T, s store.Swapper) {
	const name = "vault/tenants/a.json"
	v1 := mustSwap(t, s, name, []byte(`{"rev":1}`), "")
	expectVersioned(t, s, name, []byte(`{"rev":1}`), v1)
	v2 := mustSwap(t, s, name, []byte(`{"rev":2}`), v1)
	if v2 == v1 {
		t.Errorf("new content kept version %q", v1)
	}
	expectVersioned(t, s, name, []byte(`{"rev":2}`), v2)
	// An empty object is a valid state document too.
	v3 := mustSwap(t, s, name, nil, v2)
	expectVersioned(t, s, name, nil, v3)
}

func testSwapReadMissing(t *testing.T, s store.Swapper) {
	_, _, err := s.ReadVersioned(t.Context(), "vault/tenants/none.json", 1024)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ReadVersioned of a missing object: %v, want ErrNotFound", err)
	}
}

func testSwapStale(t *testing.T, s store.Swapper) {
	const name = "vault/tokens/t.json"
	v1 := mustSwap(t, s, name, []byte(`{"rev":1}`), "")
	v2 := mustSwap(t, s, name, []byte(`{"rev":2}`), v1)
	_, err := s.Swap(t.Context(), name, []byte(`{"rev":3,"stale":true}`), v1)
	expectConflict(t, err, "Swap at a stale version")
	_, err = s.Swap(t.Context(), name, []byte(`{"rev":3,"bogus":true}`), "not-a-version")
	expectConflict(t, err, "Swap at a made-up version")
	expectVersioned(t, s, name, []byte(`{"rev":2}`), v2)
}

func testSwapCreateExisting(t *testing.T, s store.Swapper) {
	const name = "vault/names/acme"
	v1 := mustSwap(t, s, name, []byte(`{"tenant":"1"}`), "")
	_, err := s.Swap(t.Context(), name, []byte(`{"tenant":"2"}`), "")
	expectConflict(t, err, "create of an existing object")
	expectVersioned(t, s, name, []byte(`{"tenant":"1"}`), v1)
}

func testSwapVersionOfMissing(t *testing.T, s store.Swapper) {
	const name = "vault/creds/gone.json"
	v1 := mustSwap(t, s, "vault/creds/other.json", []byte(`{}`), "")
	_, err := s.Swap(t.Context(), name, []byte(`{}`), v1)
	expectConflict(t, err, "Swap at a version of a missing object")
	if _, _, err := s.ReadVersioned(t.Context(), name, 1024); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a failed Swap created the object: %v", err)
	}
}

func testSwapTooLarge(t *testing.T, s store.Swapper) {
	const name = "vault/usage/big.json"
	mustSwap(t, s, name, data(100, 7), "")
	_, _, err := s.ReadVersioned(t.Context(), name, 99)
	if err == nil {
		t.Fatal("ReadVersioned of 100 bytes with max 99 succeeded")
	}
	if errors.Is(err, store.ErrNotFound) || !store.IsPermanent(err) {
		t.Errorf("ReadVersioned above max: %v, want a permanent error other than ErrNotFound", err)
	}
	if b, _, err := s.ReadVersioned(t.Context(), name, 100); err != nil || len(b) != 100 {
		t.Errorf("ReadVersioned with max == size: %d bytes, %v", len(b), err)
	}
}

func testSwapInvalidName(t *testing.T, s store.Swapper) {
	for _, name := range []string{"", "../escape", "vault/.locks/x", "a//b", "Upper"} {
		if _, err := s.Swap(t.Context(), name, []byte("x"), ""); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("Swap(%q): %v, want ErrInvalidName", name, err)
		}
		if _, _, err := s.ReadVersioned(t.Context(), name, 10); !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("ReadVersioned(%q): %v, want ErrInvalidName", name, err)
		}
	}
}

type counterDoc struct {
	N      int            `json:"n"`
	Rev    int            `json:"rev"`
	Counts map[string]int `json:"counts"`
}

// RaceCounter runs workers goroutines, spread round-robin over stores (which
// must share one backend), each adding 1 to a JSON counter at name
// increments times with read-modify-swap loops, and fails t unless the
// counter ends at exactly workers*increments: no update is lost, none is
// applied twice.
func RaceCounter(t *testing.T, stores []store.Swapper, name string, workers, increments int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		s := stores[w%len(stores)]
		wg.Go(func() {
			id := fmt.Sprintf("w%d", w)
			for range increments {
				if err := Increment(t, s, name, id); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b, _, err := stores[0].ReadVersioned(t.Context(), name, 1<<20)
	if err != nil {
		t.Fatalf("reading the counter: %v", err)
	}
	var doc counterDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("counter %q: %v", b, err)
	}
	if want := workers * increments; doc.N != want || doc.Rev != want {
		t.Fatalf("counter = %d (rev %d) after %d increments: updates were lost or doubled", doc.N, doc.Rev, want)
	}
	for w := range workers {
		if got := doc.Counts[fmt.Sprintf("w%d", w)]; got != increments {
			t.Errorf("worker %d applied %d increments, want %d", w, got, increments)
		}
	}
}

// Increment adds 1 to the counter at name for worker id, retrying on
// ErrConflict (with a little jitter) until its swap wins.
func Increment(t testing.TB, s store.Swapper, name, id string) error {
	for attempt := 0; attempt < 10000; attempt++ {
		b, v, err := s.ReadVersioned(t.Context(), name, 1<<20)
		var doc counterDoc
		switch {
		case errors.Is(err, store.ErrNotFound):
			v = ""
		case err != nil:
			return fmt.Errorf("read %s: %w", name, err)
		default:
			if err := json.Unmarshal(b, &doc); err != nil {
				return fmt.Errorf("counter %q: %w", b, err)
			}
		}
		if doc.Counts == nil {
			doc.Counts = map[string]int{}
		}
		doc.N++
		doc.Rev++
		doc.Counts[id]++
		nb, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		_, err = s.Swap(t.Context(), name, nb, v)
		if err == nil {
			return nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("swap %s: %w", name, err)
		}
		time.Sleep(time.Duration(rand.N(1000+attempt*100)) * time.Microsecond)
	}
	return fmt.Errorf("%s: worker %s lost 10000 swaps in a row", name, id)
}
