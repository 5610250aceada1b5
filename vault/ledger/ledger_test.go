package ledger_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

type fakeClock = clocktest.Clock

type env struct {
	data   store.Store
	l      [2]*ledger.Ledger
	clock  *fakeClock
	tenant *registry.Tenant
}

// setup opens two Local stores on one directory, as two replicas would,
// with a ledger on each.
func setup(t *testing.T, quota int64) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{clock: clocktest.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))}
	for i := range e.l {
		s, err := store.OpenLocal(dir, true)
		if err != nil {
			t.Fatal(err)
		}
		e.data = s
		if e.l[i], err = ledger.New(s, s, e.clock, nil); err != nil {
			t.Fatal(err)
		}
	}
	e.tenant = &registry.Tenant{ID: "0123456789abcdef01234567", Name: "acme", Quota: quota}
	return e
}

func packName(t *testing.T) (string, []byte) {
	b := make([]byte, 100)
	rand.Read(b)
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:])
	return "data/" + h[:2] + "/" + h, b
}

func (e *env) put(t *testing.T, name string, b []byte) {
	if err := e.data.Put(context.Background(), ledger.ObjectKey(e.tenant.ID, name), bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

func TestReserveCommitRelease(t *testing.T) {
	e := setup(t, 0)
	ctx := context.Background()
	name, _ := packName(t)
	r, err := e.l[0].Reserve(ctx, e.tenant, name, vaultapi.KindPack, 100, ledger.Meta{}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.l[1].Reserve(ctx, e.tenant, name, vaultapi.KindPack, 100, ledger.Meta{}, time.Minute); !errors.Is(err, ledger.ErrBusy) {
		t.Fatalf("second reservation of one name: %v", err)
	}
	u, _ := e.l[1].Usage(ctx, e.tenant.ID)
	if u.ReservedBytes() != 100 || u.StoredBytes != 0 {
		t.Fatalf("%+v", u)
	}
	if err := r.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.l[1].Commit(ctx, r); err != nil { // twice: no-op
		t.Fatal(err)
	}
	snap := "snapshots/" + strings.Repeat("a", 64)
	rs, err := e.l[1].Reserve(ctx, e.tenant, snap, vaultapi.KindSnapshot, 10, ledger.Meta{LogicalBytes: 1 << 30, DataBytes: 5000}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	idx := "index/" + strings.Repeat("b", 64)
	ri, err := e.l[0].Reserve(ctx, e.tenant, idx, vaultapi.KindIndex, 7, ledger.Meta{LogicalBytes: 99}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ri.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ri.Release(ctx); err != nil {
		t.Fatal(err)
	}
	u, err = e.l[0].Usage(ctx, e.tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := vaultapi.UsageInfo{StoredBytes: 110, Objects: 2, Packs: 1, PackBytes: 100, Snapshots: 1, Reported: vaultapi.ReportedUsage{LogicalBytes: 1 << 30, DataBytes: 5000}}
	if u.Info() != want {
		t.Fatalf("usage %+v, want %+v", u.Info(), want)
	}
	if _, err := e.l[0].Reserve(ctx, e.tenant, "../x", vaultapi.KindPack, 1, ledger.Meta{}, 0); err == nil {
		t.Fatal("bad name reserved")
	}
}

func TestQuotaMessage(t *testing.T) {
	e := setup(t, 1<<30)
	ctx := context.Background()
	name, _ := packName(t)
	r, err := e.l[0].Reserve(ctx, e.tenant, name, vaultapi.KindPack, 1<<30-(8<<20), ledger.Meta{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	name2, _ := packName(t)
	_, err = e.l[1].Reserve(ctx, e.tenant, name2, vaultapi.KindPack, 16<<20, ledger.Meta{}, 0)
	var qe *store.QuotaError
	if !errors.As(err, &qe) || !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("over quota: %v", err)
	}
	for _, s := range []string{`tenant "acme"`, "quota 1.00 GiB exceeded", "stored 1016.00 MiB", "in flight 0 B", "this object 16.00 MiB", "cofferd tenant set-quota"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("message %q lacks %q", err, s)
		}
	}
	// Exactly up to the quota is fine.
	if _, err := e.l[1].Reserve(ctx, e.tenant, name2, vaultapi.KindPack, 8<<20, ledger.Meta{}, 0); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentExact: 8 goroutines on two ledgers race for a quota that
// fits exactly 10 objects; exactly 10 get through and the counters are exact.
func TestConcurrentExact(t *testing.T) {
	const size = 1000
	e := setup(t, 10*size)
	ctx := context.Background()
	var ok, refused, released atomic.Int32
	var wg sync.WaitGroup
	for g := range 8 {
		l := e.l[g%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 6 {
				name, _ := packName(t)
				r, err := l.Reserve(ctx, e.tenant, name, vaultapi.KindPack, size, ledger.Meta{}, 0)
				if errors.Is(err, store.ErrNoSpace) {
					refused.Add(1)
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				if i == 0 && g < 4 { // these uploads fail: released, quota freed
					released.Add(1)
					if err := r.Release(ctx); err != nil {
						t.Error(err)
					}
					continue
				}
				ok.Add(1)
				if err := r.Commit(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	u, err := e.l[0].Usage(ctx, e.tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 10 || u.StoredBytes != 10*size || u.Objects != 10 || u.Packs != 10 || len(u.Reserved) != 0 {
		t.Fatalf("committed %d (refused %d, released %d), usage %+v", ok.Load(), refused.Load(), released.Load(), u)
	}
	if int(ok.Load()+refused.Load()+released.Load()) != 48 {
		t.Fatalf("lost attempts: %d %d %d", ok.Load(), refused.Load(), released.Load())
	}
}

func TestSettleExpired(t *testing.T) {
	e := setup(t, 0)
	ctx := context.Background()
	stored, body := packName(t)
	lost, _ := packName(t)
	wrongSize, wbody := packName(t)
	for _, n := range []struct {
		name string
		size int64
	}{{stored, 100}, {lost, 100}, {wrongSize, 100}} {
		if _, err := e.l[0].Reserve(ctx, e.tenant, n.name, vaultapi.KindPack, n.size, ledger.Meta{}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	e.put(t, stored, body)          // stored, but the replica died before Commit
	e.put(t, wrongSize, wbody[:50]) // a different object of that name (cannot happen, but not counted)
	// Not yet settled: within expiry + grace; the name is still busy.
	e.clock.Sleep(ctx, time.Minute+ledger.SettleGrace-time.Second)
	u, _ := e.l[1].Usage(ctx, e.tenant.ID)
	if len(u.Reserved) != 3 || u.StoredBytes != 0 {
		t.Fatalf("settled too early: %+v", u)
	}
	if _, err := e.l[1].Reserve(ctx, e.tenant, lost, vaultapi.KindPack, 100, ledger.Meta{}, 0); !errors.Is(err, ledger.ErrBusy) {
		t.Fatalf("busy expected: %v", err)
	}
	e.clock.Sleep(ctx, time.Second)
	u, err := e.l[1].Usage(ctx, e.tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Reserved) != 0 || u.StoredBytes != 100 || u.Objects != 1 {
		t.Fatalf("after settle: %+v", u)
	}
	// A settled name can be reserved again; a late Commit of a settled
	// reservation changes nothing.
	if _, err := e.l[0].Reserve(ctx, e.tenant, lost, vaultapi.KindPack, 100, ledger.Meta{}, 0); err != nil {
		t.Fatal(err)
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.00 KiB", 1 << 20: "1.00 MiB", 1<<30 + 1<<29: "1.50 GiB"} {
		if got := ledger.FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// swapCounter counts the compare-and-swaps that reach the store.
type swapCounter struct {
	*store.Local
	swaps atomic.Int32
}

func (s *swapCounter) Swap(ctx context.Context, name string, b []byte, ifVersion string) (string, error) {
	s.swaps.Add(1)
	return s.Local.Swap(ctx, name, b, ifVersion)
}

// TestGroupCommit has 16 uploads of one tenant reserve and commit at once
// on one replica: their usage changes share compare-and-swaps (fewer writes
// than changes), each still gets its own answer (the quota refuses exactly
// the uploads that do not fit), and the totals are exact.
func TestGroupCommit(t *testing.T) {
	const size, uploads, fit = 1000, 16, 12
	local, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	sc := &swapCounter{Local: local}
	l, err := ledger.New(sc, local, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tenant := &registry.Tenant{ID: "0123456789abcdef01234567", Name: "acme", Quota: fit * size}
	ctx := context.Background()
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range uploads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			name, _ := packName(t)
			r, err := l.Reserve(ctx, tenant, name, vaultapi.KindPack, size, ledger.Meta{}, 0)
			if errors.Is(err, store.ErrNoSpace) {
				refused.Add(1)
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			if err := r.Commit(ctx); err != nil {
				t.Error(err)
			}
			ok.Add(1)
		}()
	}
	close(start)
	wg.Wait()
	u, err := l.Usage(ctx, tenant.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ok.Load() != fit || refused.Load() != uploads-fit || u.StoredBytes != fit*size || len(u.Reserved) != 0 {
		t.Fatalf("committed %d, refused %d, usage %+v", ok.Load(), refused.Load(), u)
	}
	if n := sc.swaps.Load(); n >= fit*2 {
		t.Errorf("%d compare-and-swaps for %d reservations and %d commits: the changes were not grouped", n, uploads, fit)
	}
	t.Logf("%d compare-and-swaps for %d changes", sc.swaps.Load(), uploads+fit)
}

// A committed key slot records the credential that uploaded it; other
// kinds, released uploads and credentials that are no id record nothing.
func TestKeyUploads(t *testing.T) {
	e := setup(t, 0)
	ctx := context.Background()
	const cred = "00112233445566778899aabb"
	key := func(i int) string { return "keys/" + strings.Repeat(string("0123456789abcdef"[i]), 64) }
	pack, _ := packName(t)
	for i, c := range []struct {
		name   string
		kind   vaultapi.Kind
		cred   string
		commit bool
	}{
		{key(1), vaultapi.KindKey, cred, true},
		{key(2), vaultapi.KindKey, cred, false},
		{key(3), vaultapi.KindKey, "not-an-id", true},
		{pack, vaultapi.KindPack, cred, true},
	} {
		r, err := e.l[i%2].Reserve(ctx, e.tenant, c.name, c.kind, 10, ledger.Meta{Credential: c.cred}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if c.commit {
			err = r.Commit(ctx)
		} else {
			err = r.Release(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	u, err := e.l[0].Usage(ctx, e.tenant.ID)
	if err != nil || len(u.KeyUploads) != 1 || u.KeyUploads[key(1)] != cred || u.Objects != 3 {
		t.Fatalf("usage %+v %v", u, err)
	}
}
