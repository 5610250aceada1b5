package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// Run checks that the stores newStore makes behave as store.Store requires.
// newStore is called once per subtest and must return an empty store; Run
// closes it when the subtest ends.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"PutGetRoundTrip", testRoundTrip},
		{"GetRange", testGetRange},
		{"PutExisting", testPutExisting},
		{"PutShortSource", testPutShortSource},
		{"PutSourceError", testPutSourceError},
		{"Stat", testStat},
		{"GetMissing", testGetMissing},
		{"List", testList},
		{"ListFnError", testListFnError},
		{"Delete", testDelete},
		{"InvalidNames", testInvalidNames},
		{"ConcurrentPut", testConcurrentPut},
		{"CanceledContext", testCanceledContext},
		{"Location", testLocation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(t, s)
		})
	}
}

// data returns n pseudo-random bytes, different for each seed.
func data(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x636f66666572))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func put(t *testing.T, s store.Store, name string, b []byte) {
	t.Helper()
	if err := s.Put(t.Context(), name, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", name, len(b), err)
	}
}

func mustRead(t *testing.T, s store.Store, name string) []byte {
	t.Helper()
	b, err := store.ReadAll(t.Context(), s, name)
	if err != nil {
		t.Fatalf("ReadAll(%q): %v", name, err)
	}
	return b
}

// listAll returns every Info under prefix, sorted by name.
// modTimeSlack allows for a store whose clock is not ours (a server on
// loopback) and for stores that keep whole seconds (HTTP dates).
const modTimeSlack = 2 * time.Second

// checkModTime fails unless info's ModTime lies between before and after
// (the bounds of the put), give or take modTimeSlack.
func checkModTime(t *testing.T, op string, info store.Info, before, after time.Time) {
	t.Helper()
	if m := info.ModTime; m.Before(before.Add(-modTimeSlack)) || m.After(after.Add(modTimeSlack)) {
		t.Errorf("%s(%s).ModTime = %v; want between %v and %v", op, info.Name, m, before, after)
	}
}

// listAll lists prefix, sorted by name, with ModTime checked (every object
// in the suite was put during the test) and then cleared for comparison.
func listAll(t *testing.T, s store.Store, prefix string) []store.Info {
	t.Helper()
	var out []store.Info
	started := time.Now()
	err := s.List(t.Context(), prefix, func(i store.Info) error {
		checkModTime(t, "List", i, started.Add(-10*time.Minute), started)
		i.ModTime = time.Time{}
		out = append(out, i)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	slices.SortFunc(out, func(a, b store.Info) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func wantNotFound(t *testing.T, s store.Store, name string) {
	t.Helper()
	if info, err := s.Stat(t.Context(), name); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Stat(%q) = %+v, %v; want ErrNotFound", name, info, err)
	}
}

func testRoundTrip(t *testing.T, s store.Store) {
	for i, n := range []int{0, 1, 1000, 5 << 20} {
		name := fmt.Sprintf("data/%02x/obj-%d", i, n)
		want := data(n, uint64(i))
		put(t, s, name, want)
		got := mustRead(t, s, name)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: read %d bytes that differ from the %d put", name, len(got), len(want))
		}
		info, err := s.Stat(t.Context(), name)
		if err != nil || info.Size != int64(n) || info.Name != name {
			t.Errorf("Stat(%q) = %+v, %v; want size %d", name, info, err, n)
		}
	}
	// Every character a name may use.
	name := "abc-xyz_0123456789/a.b-c_d/z"
	put(t, s, name, []byte("x"))
	if got := mustRead(t, s, name); string(got) != "x" {
		t.Errorf("%s: read %q, want \"x\"", name, got)
	}
}

func testGetRange(t *testing.T, s store.Store) {
	const name = "data/ranged"
	obj := data(1000, 7)
	put(t, s, name, obj)
	ok := []struct{ off, length int64 }{
		{0, 1000}, {0, -1}, {100, 200}, {999, 1}, {900, -1}, {1000, -1}, {500, 0}, {1000, 0}, {0, 1},
	}
	for _, c := range ok {
		var got []byte
		calls := 0
		err := s.Get(t.Context(), name, c.off, c.length, func(r io.Reader) error {
			calls++
			var err error
			got, err = io.ReadAll(r)
			return err
		})
		end := c.off + c.length
		if c.length < 0 {
			end = int64(len(obj))
		}
		if err != nil || calls != 1 || !bytes.Equal(got, obj[c.off:end]) {
			t.Errorf("Get(%d, %d): %d bytes, %d calls, err %v; want bytes %d..%d in one call",
				c.off, c.length, len(got), calls, err, c.off, end)
		}
	}
	bad := []struct{ off, length int64 }{
		{990, 20}, {1000, 1}, {1001, -1}, {2000, 10}, {1001, 0}, {-1, 10}, {-1, -1},
	}
	for _, c := range bad {
		called := false
		err := s.Get(t.Context(), name, c.off, c.length, func(r io.Reader) error {
			called = true
			_, err := io.Copy(io.Discard, r)
			return err
		})
		if !errors.Is(err, store.ErrInvalidRange) || called {
			t.Errorf("Get(%d, %d) = %v, fn called %v; want ErrInvalidRange before fn", c.off, c.length, err, called)
		}
	}
	if _, err := store.ReadRange(t.Context(), s, name, 400, 600); err != nil {
		t.Errorf("ReadRange(400, 600): %v", err)
	}
	if got := mustRead(t, s, name); !bytes.Equal(got, obj) {
		t.Error("object changed by ranged reads")
	}
}

func testPutExisting(t *testing.T, s store.Store) {
	const name = "keys/k1"
	orig := []byte("original content")
	put(t, s, name, orig)
	for _, b := range [][]byte{[]byte("replacement, longer than the original"), orig, nil} {
		err := s.Put(t.Context(), name, bytes.NewReader(b), int64(len(b)))
		if !errors.Is(err, store.ErrExists) {
			t.Errorf("second Put of %d bytes = %v; want ErrExists", len(b), err)
		}
		if !store.IsPermanent(err) {
			t.Errorf("IsPermanent(%v) = false", err)
		}
	}
	if got := mustRead(t, s, name); !bytes.Equal(got, orig) {
		t.Errorf("after refused Put the object reads %q, want %q", got, orig)
	}
}

// shortReaderAt holds fewer bytes than the size Put is told.
type shortReaderAt struct{ b []byte }

func (r shortReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(r.b)) {
		return 0, io.EOF
	}
	n := copy(p, r.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func testPutShortSource(t *testing.T, s store.Store) {
	for _, c := range []struct {
		name       string
		have, want int
	}{{"data/short-1", 10, 100}, {"data/short-2", 0, 1}, {"data/short-3", 1 << 20, 1<<20 + 1}} {
		err := s.Put(t.Context(), c.name, shortReaderAt{data(c.have, 1)}, int64(c.want))
		if err == nil || errors.Is(err, store.ErrExists) {
			t.Errorf("Put(%s) with %d of %d bytes = %v; want an error", c.name, c.have, c.want, err)
		}
		wantNotFound(t, s, c.name)
	}
	if got := listAll(t, s, ""); len(got) != 0 {
		t.Errorf("after failed Puts List shows %+v", got)
	}
	// Nothing left behind blocks a correct Put.
	put(t, s, "data/short-1", data(100, 1))
	if got := mustRead(t, s, "data/short-1"); !bytes.Equal(got, data(100, 1)) {
		t.Error("Put after a failed Put stored the wrong bytes")
	}
}

var errSource = errors.New("source broke")

// failingReaderAt fails reads past failAt.
type failingReaderAt struct {
	b      []byte
	failAt int64
}

func (r failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.failAt {
		n := 0
		if off < r.failAt {
			n = copy(p, r.b[off:r.failAt])
		}
		return n, errSource
	}
	return copy(p, r.b[off:]), nil
}

func testPutSourceError(t *testing.T, s store.Store) {
	const name = "data/broken-source"
	b := data(300_000, 3)
	err := s.Put(t.Context(), name, failingReaderAt{b: b, failAt: 200_000}, int64(len(b)))
	if err == nil || errors.Is(err, store.ErrExists) {
		t.Fatalf("Put from a failing source = %v; want an error", err)
	}
	wantNotFound(t, s, name)
	if got := listAll(t, s, ""); len(got) != 0 {
		t.Errorf("after failed Put List shows %+v", got)
	}
}

func testStat(t *testing.T, s store.Store) {
	before := time.Now()
	put(t, s, "snapshots/s1", data(12345, 4))
	after := time.Now()
	info, err := s.Stat(t.Context(), "snapshots/s1")
	checkModTime(t, "Stat", info, before, after)
	info.ModTime = time.Time{}
	if err != nil || info != (store.Info{Name: "snapshots/s1", Size: 12345}) {
		t.Errorf("Stat = %+v, %v; want size 12345", info, err)
	}
	listed := listAll(t, s, "snapshots/")
	if len(listed) != 1 {
		t.Fatalf("List(snapshots/) = %+v; want one object", listed)
	}
	wantNotFound(t, s, "snapshots/s2")
	wantNotFound(t, s, "nowhere/s1")
	wantNotFound(t, s, "snapshots") // a prefix is no object
}

func testGetMissing(t *testing.T, s store.Store) {
	put(t, s, "data/present", []byte("here"))
	for _, name := range []string{"data/absent", "absent/deeper/still", "data"} {
		called := false
		err := s.Get(t.Context(), name, 0, -1, func(io.Reader) error { called = true; return nil })
		if !errors.Is(err, store.ErrNotFound) || called {
			t.Errorf("Get(%q) = %v, fn called %v; want ErrNotFound without calling fn", name, err, called)
		}
		if !store.IsPermanent(err) {
			t.Errorf("IsPermanent(%v) = false", err)
		}
		if err := s.Get(t.Context(), name, 1, 2, func(io.Reader) error { return nil }); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("ranged Get(%q) = %v; want ErrNotFound", name, err)
		}
	}
}

func testList(t *testing.T, s store.Store) {
	objs := map[string]int{
		"data/00/aaa": 10,
		"data/01/bbb": 0,
		"data/ccc":    30,
		"dat/ddd":     40,
		"datax/eee":   50,
		"index/fff":   60,
	}
	for name, n := range objs {
		put(t, s, name, data(n, uint64(n)))
	}
	infos := func(names ...string) []store.Info {
		out := []store.Info{}
		for _, n := range names {
			out = append(out, store.Info{Name: n, Size: int64(objs[n])})
		}
		return out
	}
	cases := []struct {
		prefix string
		want   []store.Info
	}{
		{"data/", infos("data/00/aaa", "data/01/bbb", "data/ccc")},
		{"dat/", infos("dat/ddd")},
		{"data/0", infos("data/00/aaa", "data/01/bbb")},
		{"data/00/", infos("data/00/aaa")},
		{"data", infos("data/00/aaa", "data/01/bbb", "data/ccc", "datax/eee")},
		{"data/ccc", infos("data/ccc")},
		{"", infos("dat/ddd", "data/00/aaa", "data/01/bbb", "data/ccc", "datax/eee", "index/fff")},
		{"nothing/", infos()},
		{"index/g", infos()},
	}
	for _, c := range cases {
		got := listAll(t, s, c.prefix)
		if got == nil {
			got = []store.Info{}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("List(%q) = %+v\nwant %+v", c.prefix, got, c.want)
		}
	}
}

func testListFnError(t *testing.T, s store.Store) {
	for i := range 5 {
		put(t, s, fmt.Sprintf("index/%d", i), []byte{byte(i)})
	}
	stop := errors.New("stop here")
	calls := 0
	err := s.List(t.Context(), "index/", func(store.Info) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with failing fn = %v after %d calls; want the fn's error after 1 call", err, calls)
	}
	// The store is still usable.
	if got := listAll(t, s, "index/"); len(got) != 5 {
		t.Errorf("List after stopped List found %d objects, want 5", len(got))
	}
}

func testDelete(t *testing.T, s store.Store) {
	const name = "locks/l1"
	put(t, s, name, []byte("lock"))
	put(t, s, "locks/l2", []byte("other"))
	if err := s.Delete(t.Context(), name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, s, name)
	if err := s.Get(t.Context(), name, 0, -1, func(io.Reader) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete = %v; want ErrNotFound", err)
	}
	if got := listAll(t, s, "locks/"); !slices.Equal(got, []store.Info{{Name: "locks/l2", Size: 5}}) {
		t.Errorf("List after Delete = %+v; want only locks/l2", got)
	}
	for _, n := range []string{name, "locks/never", "never/was/here"} {
		if err := s.Delete(t.Context(), n); err != nil {
			t.Errorf("Delete(%q) of a missing object = %v; want nil", n, err)
		}
	}
	// A deleted name can be put again.
	put(t, s, name, []byte("again"))
	if got := mustRead(t, s, name); string(got) != "again" {
		t.Errorf("after re-Put read %q, want \"again\"", got)
	}
}

// InvalidNames are names every store must refuse.
var InvalidNames = []string{
	"", "../x", "x/../y", "/abs", "a//b", "a/", "A", "data/Abc", "a\\b", ".hidden", "a/.b", ".", "..",
	"a b", "a\x00b", "ü", strings.Repeat("a", store.MaxNameLen+1),
	strings.Repeat("a", store.MaxSegmentLen+1), "x/" + strings.Repeat("a", store.MaxSegmentLen+1),
}

func testInvalidNames(t *testing.T, s store.Store) {
	ctx := t.Context()
	nop := func(io.Reader) error { return nil }
	for _, name := range InvalidNames {
		checks := map[string]error{
			"Put":    s.Put(ctx, name, bytes.NewReader([]byte("x")), 1),
			"Get":    s.Get(ctx, name, 0, -1, nop),
			"Delete": s.Delete(ctx, name),
		}
		_, checks["Stat"] = s.Stat(ctx, name)
		for op, err := range checks {
			if !errors.Is(err, store.ErrInvalidName) {
				t.Errorf("%s(%q) = %v; want ErrInvalidName", op, name, err)
			}
		}
	}
	for _, prefix := range []string{"../", "/abs", "A/", "a//", ".hidden/", "a\\"} {
		err := s.List(ctx, prefix, func(store.Info) error { return nil })
		if !errors.Is(err, store.ErrInvalidName) {
			t.Errorf("List(%q) = %v; want ErrInvalidName", prefix, err)
		}
	}
	if got := listAll(t, s, ""); len(got) != 0 {
		t.Errorf("invalid names stored objects: %+v", got)
	}
	// The longest valid names work.
	for _, long := range []string{
		strings.Repeat("a", store.MaxSegmentLen),
		strings.Repeat("b", 128) + "/" + strings.Repeat("c", store.MaxNameLen-129),
	} {
		put(t, s, long, []byte("x"))
		if info, err := s.Stat(ctx, long); err != nil || info.Size != 1 {
			t.Errorf("Stat of %d-byte name = %+v, %v", len(long), info, err)
		}
	}
}

func testConcurrentPut(t *testing.T, s store.Store) {
	const name = "data/contended"
	const n = 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			b := data(64<<10, uint64(100+i))
			<-start
			errs[i] = s.Put(t.Context(), name, bytes.NewReader(b), int64(len(b)))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("Put %d and Put %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, store.ErrExists):
			t.Errorf("Put %d = %v; want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no Put succeeded")
	}
	if got := mustRead(t, s, name); !bytes.Equal(got, data(64<<10, uint64(100+winner))) {
		t.Errorf("stored object is not the successful Put's content")
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	put(t, s, "data/here", []byte("x"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Put(ctx, "data/new", bytes.NewReader([]byte("y")), 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with canceled context = %v; want context.Canceled", err)
	}
	wantNotFound(t, s, "data/new")
	called := false
	if err := s.Get(ctx, "data/here", 0, -1, func(io.Reader) error { called = true; return nil }); !errors.Is(err, context.Canceled) || called {
		t.Errorf("Get with canceled context = %v, fn called %v; want context.Canceled", err, called)
	}
	if err := s.List(ctx, "", func(store.Info) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("List with canceled context = %v; want context.Canceled", err)
	}
}

func testLocation(t *testing.T, s store.Store) {
	if s.Location() == "" {
		t.Error("Location is empty")
	}
}
