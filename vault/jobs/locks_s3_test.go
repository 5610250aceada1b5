package jobs

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/testutil/miniotest"
)

// TestGCDeletesLockedPackAfterItsLockOnMinIO: on a MinIO bucket with Object
// Lock (compliance), the vault's own credential cannot delete a pack
// before its retention ends; garbage collection postpones the condemned
// pack to then, and deletes it on the first run after.
func TestGCDeletesLockedPackAfterItsLockOnMinIO(t *testing.T) {
	srv := miniotest.Start(t)
	const retention = 6 * time.Second
	st, err := storeurl.Open(t.Context(), srv.NewLockedBucket(t), storeurl.Options{
		ObjectLock: store.LockPolicy{Mode: store.LockCompliance, Retention: retention,
			Match: func(name string) bool { return strings.HasPrefix(name, "repos/") }},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Provider.Close()
	sw, ok := store.As[store.Swapper](st.Base)
	if !ok {
		t.Fatal("the locked bucket has no compare-and-swap")
	}
	d := Deps{Data: st.Base, Meta: sw, Clock: clock.Real}
	gone := putPack(t, d, "unneeded")
	start := time.Now()
	if err := st.Retry.Delete(t.Context(), packKey(tid, gone)); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("the vault's store credential deleted a locked pack: %v", err)
	}
	o := GCOptions{Grace: time.Second}
	time.Sleep(1100 * time.Millisecond)
	if rep, err := CollectGarbage(t.Context(), d, tid, o); err != nil || !slices.Equal(rep.Plan.NewMarks, []string{gone}) {
		t.Fatalf("marking: %+v %v", rep, err)
	}
	time.Sleep(1100 * time.Millisecond)
	rep, err := CollectGarbage(t.Context(), d, tid, o)
	if err != nil || rep.Postponed != 1 || len(rep.Deleted) != 0 {
		t.Fatalf("condemning a locked pack: %+v %v", rep, err)
	}
	if _, err := st.Base.Stat(t.Context(), packKey(tid, gone)); err != nil {
		t.Fatalf("the locked pack is gone before its time: %v", err)
	}
	time.Sleep(time.Until(start.Add(retention + time.Second)))
	rep, err = CollectGarbage(t.Context(), d, tid, o)
	if err != nil || !slices.Equal(rep.Deleted, []string{gone}) {
		t.Fatalf("after the lock: %+v %v", rep, err)
	}
	if _, err := st.Base.Stat(t.Context(), packKey(tid, gone)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the pack is still there after GC deleted it: %v", err)
	}
}
