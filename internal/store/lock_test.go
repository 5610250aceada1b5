package store_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
)

// TestLockingConformance: the fake of a bucket with Object Lock keeps the
// rules the S3 store keeps (TestS3LockerConformance).
func TestLockingConformance(t *testing.T) {
	storetest.RunLocker(t, func(t *testing.T) storetest.LockerEnv {
		clk := clocktest.New(t0)
		return storetest.LockerEnv{Store: storetest.NewLocking(t, clk), Mode: store.LockCompliance, Now: clk.Now,
			Wait: func(until time.Time) { clk.Advance(until.Sub(clk.Now()) + time.Second) }}
	})
}

var t0 = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

func isPack(name string) bool { return strings.HasPrefix(name, "repos/") }

// TestObjectLockDecorator: the decorator locks exactly the names its
// policy matches, for Retention from its clock; a locked object's delete
// fails with a permanent ErrLocked that the retry layer does not retry,
// and succeeds after the lock ends.
func TestObjectLockDecorator(t *testing.T) {
	clk := clocktest.New(t0)
	mem := storetest.NewLocking(t, clk)
	ol, err := store.WithObjectLock(mem, store.LockPolicy{Mode: store.LockCompliance, Retention: 24 * time.Hour, Match: isPack, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	st := store.WithRetry(ol, store.RetryPolicy{Attempts: 5, Base: time.Millisecond, Max: time.Millisecond}, clk, nil)
	ctx := t.Context()
	for _, n := range []string{"repos/t/data/aa/1", "vault/tenants/t"} {
		if err := st.Put(ctx, n, store.Bytes("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	if l, err := store.LockInfo(ctx, st, "repos/t/data/aa/1"); err != nil || l != (store.Lock{Mode: store.LockCompliance, Until: t0.Add(24 * time.Hour)}) {
		t.Errorf("pack lock = %v, %v; want compliance until a day after t0", l, err)
	}
	if l, err := store.LockInfo(ctx, st, "vault/tenants/t"); err != nil || l != (store.Lock{}) {
		t.Errorf("state document lock = %v, %v; want none", l, err)
	}
	err = st.Delete(ctx, "repos/t/data/aa/1")
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "locked until 2026-12-06T12:00:00Z") || st.Waited() != 0 {
		t.Errorf("Delete of a locked pack = %v after waiting %s; want ErrLocked at once, naming the date", err, st.Waited())
	}
	clk.Advance(24*time.Hour + time.Second)
	if err := st.Delete(ctx, "repos/t/data/aa/1"); err != nil {
		t.Errorf("Delete after the lock ended: %v", err)
	}
	if p, ok := store.LockPolicyOf(st); !ok || p.Mode != store.LockCompliance {
		t.Errorf("LockPolicyOf through the retry layer = %+v, %v", p, ok)
	}
	if _, ok := store.LockPolicyOf(mem); ok {
		t.Error("LockPolicyOf found a policy on a store without the decorator")
	}
}

// TestExtendLocksBounded: ExtendLocks never has more than parallel
// requests in flight, extends what ends too early, counts what is already
// locked long enough, reports missing names, and a re-run writes nothing.
func TestExtendLocksBounded(t *testing.T) {
	clk := clocktest.New(t0)
	mem := storetest.NewLocking(t, clk)
	ol, err := store.WithObjectLock(mem, store.LockPolicy{Mode: store.LockGovernance, Retention: time.Hour, Match: isPack, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range 40 {
		n := fmt.Sprintf("repos/t/data/aa/%02d", i)
		names = append(names, n)
		if err := ol.Put(t.Context(), n, store.Bytes("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	// Half are already locked past the target.
	for _, n := range names[:20] {
		if _, err := mem.ExtendLock(t.Context(), n, store.Lock{Until: t0.Add(10 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	mem.MaxExtending()
	until := t0.Add(5 * time.Hour)
	rep, err := store.ExtendLocks(t.Context(), ol, append(names, "repos/t/data/aa/gone"), until, 3)
	if err != nil || rep.Extended != 20 || rep.Current != 20 || len(rep.Missing) != 1 {
		t.Fatalf("ExtendLocks = %+v, %v; want 20 extended, 20 current, 1 missing", rep, err)
	}
	if m := mem.MaxExtending(); m > 3 || m < 2 {
		t.Errorf("%d requests in flight at most; want 2 to 3 (parallel 3)", m)
	}
	for _, n := range names {
		l, _ := mem.LockInfo(t.Context(), n)
		if l.Mode != store.LockGovernance || l.Until.Before(until) {
			t.Errorf("%s: lock %v; want governance until at least %s", n, l, until)
		}
	}
	rep, err = store.ExtendLocks(t.Context(), ol, names, until, 0)
	if err != nil || rep.Extended != 0 || rep.Current != 40 {
		t.Errorf("a re-run = %+v, %v; want all 40 current", rep, err)
	}
}

// TestExtendLocksStopsOnError: the first error other than a missing
// object stops the batch and is returned.
func TestExtendLocksStopsOnError(t *testing.T) {
	clk := clocktest.New(t0)
	mem := storetest.NewLocking(t, clk)
	ol, err := store.WithObjectLock(mem, store.LockPolicy{Mode: store.LockGovernance, Retention: time.Hour, Match: isPack, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.ExtendLocks(t.Context(), ol, []string{"repos/t/../x"}, t0.Add(time.Hour), 2)
	if !errors.Is(err, store.ErrInvalidName) {
		t.Errorf("ExtendLocks of an invalid name = %v; want ErrInvalidName", err)
	}
	if _, err := store.ExtendLocks(t.Context(), ol, []string{"repos/t/x"}, t0, 1); err == nil || !strings.Contains(err.Error(), "not in the future") {
		t.Errorf("ExtendLocks to now = %v; want a refusal", err)
	}
	local, _ := store.OpenLocal(t.TempDir(), true)
	if _, err := store.ExtendLocks(t.Context(), local, []string{"a"}, t0, 1); !errors.Is(err, store.ErrNoObjectLock) {
		t.Errorf("ExtendLocks on a store that cannot lock = %v; want ErrNoObjectLock", err)
	}
}

// TestLockPolicyValidate and ParseLockMode refuse what cannot work.
func TestLockPolicyValidate(t *testing.T) {
	good := store.LockPolicy{Mode: store.LockGovernance, Retention: time.Hour, Match: isPack}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []store.LockPolicy{
		{Mode: store.LockNone, Retention: time.Hour, Match: isPack},
		{Mode: "forever", Retention: time.Hour, Match: isPack},
		{Mode: store.LockCompliance, Retention: 0, Match: isPack},
		{Mode: store.LockCompliance, Retention: time.Hour},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil; want an error", p)
		}
	}
	local, _ := store.OpenLocal(t.TempDir(), true)
	if _, err := store.WithObjectLock(local, good); !errors.Is(err, store.ErrNoObjectLock) {
		t.Errorf("WithObjectLock over a local directory = %v; want ErrNoObjectLock", err)
	}
	for in, want := range map[string]store.LockMode{"": store.LockNone, "none": store.LockNone, "Governance": store.LockGovernance, "COMPLIANCE": store.LockCompliance} {
		if got, err := store.ParseLockMode(in); err != nil || got != want {
			t.Errorf("ParseLockMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := store.ParseLockMode("legal-hold"); err == nil || !strings.Contains(err.Error(), "governance or compliance") {
		t.Errorf("ParseLockMode(legal-hold) = %v; want an error naming the modes", err)
	}
}

// TestObjectLockCapabilities: the decorator offers Locker and Swapper,
// refuses a Swap of a locked name, and hides DeferredPutter (whose put
// would bypass the lock).
func TestObjectLockCapabilities(t *testing.T) {
	clk := clocktest.New(t0)
	mem := storetest.NewLocking(t, clk)
	ol, err := store.WithObjectLock(mem, store.LockPolicy{Mode: store.LockGovernance, Retention: time.Hour, Match: isPack, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	chain := store.WithRetry(store.NewCounting(ol), store.DefaultRetry, clk, nil)
	if _, ok := store.As[store.Locker](chain); !ok {
		t.Error("As[Locker] lost through counting and retry")
	}
	if _, ok := store.As[store.DeferredPutter](chain); ok {
		t.Error("As[DeferredPutter] saw through the object lock")
	}
	sw, ok := store.As[store.Swapper](chain)
	if !ok {
		t.Fatal("As[Swapper] lost through the object lock")
	}
	if _, err := sw.Swap(t.Context(), "vault/usage/t", []byte("{}"), ""); err != nil {
		t.Errorf("Swap of a state document: %v", err)
	}
	if _, err := sw.Swap(t.Context(), "repos/t/config", []byte("{}"), ""); err == nil || !store.IsPermanent(err) {
		t.Errorf("Swap of a locked name = %v; want a permanent refusal", err)
	}
}

// TestExtendLocksRetried: a lost reply to an extension is retried by the
// retry layer and the re-run finds the lock already extended; faults on
// lock requests go through Faulty.
func TestExtendLocksRetried(t *testing.T) {
	clk := clocktest.New(t0)
	mem := storetest.NewLocking(t, clk)
	faulty := store.NewFaulty(mem)
	ol, err := store.WithObjectLock(faulty, store.LockPolicy{Mode: store.LockGovernance, Retention: time.Hour, Match: isPack, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	st := store.WithRetry(ol, store.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond}, clk, nil)
	if err := st.Put(t.Context(), "repos/t/data/aa/1", store.Bytes("x"), 1); err != nil {
		t.Fatal(err)
	}
	faulty.Add(store.FaultRule{Op: "extendlock", Times: 1, AfterBytes: 1})
	until := t0.Add(3 * time.Hour)
	rep, err := store.ExtendLocks(t.Context(), st, []string{"repos/t/data/aa/1"}, until, 1)
	if err != nil || rep.Current != 1 || faulty.Ops("extendlock") != 2 {
		t.Fatalf("ExtendLocks with a lost reply = %+v, %v after %d tries; want it current after 2", rep, err, faulty.Ops("extendlock"))
	}
	if l, _ := mem.LockInfo(t.Context(), "repos/t/data/aa/1"); !l.Until.Equal(until) {
		t.Errorf("lock = %v; want until %s", l, until)
	}
	faulty.Add(store.FaultRule{Op: "put", Times: -1, Err: store.ErrDenied})
	if err := st.Put(t.Context(), "repos/t/data/aa/2", store.Bytes("x"), 1); !errors.Is(err, store.ErrDenied) {
		t.Errorf("a locked put under a put fault = %v; want the fault", err)
	}
}
