package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

func TestLocalSwapper(t *testing.T) {
	storetest.RunSwapper(t, func(t *testing.T) store.Store { return newLocal(t) })
}

func TestDecoratedLocalSwapper(t *testing.T) {
	storetest.RunSwapper(t, func(t *testing.T) store.Store {
		p := store.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond}
		return store.WithRetry(store.NewCounting(store.NewFaulty(newLocal(t))), p, nil, nil)
	})
}

// plainStore has no Swapper: the decorators must not pretend it has one.
type plainStore struct{ store.Store }

func TestAsSwapperSeesThroughDecorators(t *testing.T) {
	l := newLocal(t)
	if _, ok := store.As[store.Swapper](l); !ok {
		t.Error("Local is not a Swapper")
	}
	r := store.WithRetry(store.NewCounting(l), store.DefaultRetry, nil, nil)
	if _, ok := store.As[store.Swapper](r); !ok {
		t.Error("Retry(Counting(Local)) is not a Swapper")
	}
	p := store.WithRetry(store.NewCounting(store.NewFaulty(plainStore{l})), store.DefaultRetry, nil, nil)
	if sw, ok := store.As[store.Swapper](p); ok {
		t.Errorf("Retry over a store without Swap claims to be a Swapper (%T)", sw)
	}
	// Called directly anyway, the decorators answer with a permanent error.
	_, err := p.Swap(t.Context(), "vault/x", []byte("x"), "")
	if err == nil || !store.IsPermanent(err) {
		t.Errorf("Swap through Retry over a plain store: %v, want a permanent error", err)
	}
}

func TestCountingCountsSwaps(t *testing.T) {
	c := store.NewCounting(newLocal(t))
	v, err := c.Swap(t.Context(), "vault/a", []byte("abc"), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadVersioned(t.Context(), "vault/a", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Swap(t.Context(), "vault/a", []byte("abcd"), v+"x"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("stale swap: %v", err)
	}
	if c.Requests() != 3 || c.PutBytes() != 3 || c.GetBytes() != 3 {
		t.Errorf("requests %d, put %d, get %d; want 3, 3, 3", c.Requests(), c.PutBytes(), c.GetBytes())
	}
}

func TestRetrySwap(t *testing.T) {
	f := store.NewFaulty(newLocal(t))
	r := store.WithRetry(f, store.RetryPolicy{Attempts: 5, Base: time.Millisecond, Max: time.Millisecond}, nil, nil)
	f.Add(store.FaultRule{Op: "swap", Times: 2})
	f.Add(store.FaultRule{Op: "readversioned", Times: 1})
	v, err := r.Swap(t.Context(), "vault/a", []byte("one"), "")
	if err != nil {
		t.Fatalf("Swap after 2 transient faults: %v", err)
	}
	if f.Ops("swap") != 3 {
		t.Errorf("swap attempts %d, want 3", f.Ops("swap"))
	}
	b, v2, err := r.ReadVersioned(t.Context(), "vault/a", 100)
	if err != nil || v2 != v || string(b) != "one" {
		t.Fatalf("ReadVersioned = %q, %q, %v; want one, %q", b, v2, err, v)
	}
	// ErrConflict is permanent: one attempt only.
	n := f.Ops("swap")
	if _, err := r.Swap(t.Context(), "vault/a", []byte("two"), ""); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("create of existing: %v", err)
	}
	if f.Ops("swap") != n+1 {
		t.Errorf("a conflict was retried (%d attempts)", f.Ops("swap")-n)
	}
	// A swap applied with its reply lost is retried and then conflicts: the
	// caller re-reads and finds its own bytes.
	f.Add(store.FaultRule{Op: "swap", Times: 1, AfterBytes: 1})
	if _, err := r.Swap(t.Context(), "vault/a", []byte("three"), v); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("replayed swap: %v, want ErrConflict", err)
	}
	if b, _, _ := r.ReadVersioned(t.Context(), "vault/a", 100); string(b) != "three" {
		t.Errorf("after the replayed swap the object holds %q", b)
	}
}

func TestLocalListSkipsLocks(t *testing.T) {
	l := newLocal(t)
	if _, err := l.Swap(t.Context(), "vault/tenants/a.json", []byte("{}"), ""); err != nil {
		t.Fatal(err)
	}
	if err := l.Put(t.Context(), "config", bytes.NewReader([]byte("c")), 1); err != nil {
		t.Fatal(err)
	}
	var names []string
	if err := l.List(t.Context(), "", func(i store.Info) error {
		names = append(names, i.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(names) != 2 {
		t.Errorf("List = %v, want config and vault/tenants/a.json only", names)
	}
	// Objects made by Swap are ordinary objects for Get, Stat and Delete.
	b, err := store.ReadAll(t.Context(), l, "vault/tenants/a.json")
	if err != nil || string(b) != "{}" {
		t.Errorf("Get of a swapped object: %q, %v", b, err)
	}
	if err := l.Delete(t.Context(), "vault/tenants/a.json"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.ReadVersioned(t.Context(), "vault/tenants/a.json", 10); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after Delete: %v", err)
	}
}

func TestLocalSwapLeavesNoTempFiles(t *testing.T) {
	root := t.TempDir()
	l, err := store.OpenLocal(root, false)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := l.Swap(t.Context(), "vault/a", []byte("1"), "")
	_, _ = l.Swap(t.Context(), "vault/a", []byte("2"), v)
	_, _ = l.Swap(t.Context(), "vault/a", []byte("3"), v)  // conflict
	_, _ = l.Swap(t.Context(), "vault/a", []byte("4"), "") // conflict
	for _, f := range files(t, root) {
		if f != "vault/a" && !bytes.HasPrefix([]byte(f), []byte(".locks/")) {
			t.Errorf("unexpected file %s", f)
		}
	}
}

// Two Local instances on one root (two replicas on one host) share the lock.
func TestLocalSwapTwoInstances(t *testing.T) {
	root := t.TempDir()
	var sws []store.Swapper
	for range 2 {
		l, err := store.OpenLocal(root, false)
		if err != nil {
			t.Fatal(err)
		}
		sws = append(sws, l)
	}
	storetest.RaceCounter(t, sws, "vault/usage/c.json", 8, 25)
}

const childEnv = "COFFER_SWAP_CHILD_ROOT"

// TestLocalSwapChild is the body of TestLocalSwapTwoProcesses's children.
func TestLocalSwapChild(t *testing.T) {
	root := os.Getenv(childEnv)
	if root == "" {
		t.Skip("run by TestLocalSwapTwoProcesses")
	}
	n, _ := strconv.Atoi(os.Getenv(childEnv + "_N"))
	l, err := store.OpenLocal(root, false)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := storetest.Increment(t, l, "vault/usage/c.json", "p"+strconv.Itoa(os.Getpid())); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLocalSwapTwoProcesses(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("child")
	}
	root := t.TempDir()
	const procs, each = 2, 100
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLocalSwapChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), childEnv+"="+root, childEnv+"_N="+strconv.Itoa(each))
		out := new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i])
		}
	}
	l, err := store.OpenLocal(root, false)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := l.ReadVersioned(t.Context(), "vault/usage/c.json", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`"n":%d,"rev":%d`, procs*each, procs*each)
	if !bytes.Contains(b, []byte(want)) {
		t.Fatalf("counter after two processes raced: %s, want %s", b, want)
	}
}

func TestS3Swapper(t *testing.T) {
	srv := minioServer(t)
	storetest.RunSwapper(t, func(t *testing.T) store.Store { return openURL(t, srv.NewBucket(t)) })
}

// Two S3 clients (two replicas) on one bucket: MinIO's If-Match is an atomic
// compare-and-swap, so no increment is lost.
func TestS3SwapTwoClients(t *testing.T) {
	srv := minioServer(t)
	u := srv.NewBucket(t)
	var sws []store.Swapper
	for range 2 {
		s := openURL(t, u)
		t.Cleanup(func() { _ = s.Close() })
		r := store.WithRetry(s, store.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: 10 * time.Millisecond}, nil, nil)
		sw, ok := store.As[store.Swapper](r)
		if !ok {
			t.Fatal("Retry(S3) is not a Swapper")
		}
		sws = append(sws, sw)
	}
	storetest.RaceCounter(t, sws, "vault/usage/c.json", 8, 25)
}

// A name that is a prefix of other objects (a directory for Local) cannot be
// swapped, and retrying cannot help.
func TestLocalSwapPrefixClash(t *testing.T) {
	l := newLocal(t)
	if _, err := l.Swap(t.Context(), "vault/a/b", []byte("1"), ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vault/a", "vault/a/b/c"} {
		_, err := l.Swap(t.Context(), name, []byte("2"), "")
		if err == nil || !store.IsPermanent(err) {
			t.Errorf("Swap(%q) over a prefix clash: %v, want a permanent error", name, err)
		}
	}
}
