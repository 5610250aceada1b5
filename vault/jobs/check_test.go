package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
)

// fakeRepo is a tenant repository of random objects under the names an
// agent gives them: the keyless check reads no more than names and bytes.
type fakeRepo struct {
	dir   string
	st    store.Store
	packs []string
}

func newFakeRepo(t *testing.T, packs int) *fakeRepo {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenLocal(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fakeRepo{dir: dir, st: st}
	r := rand.New(rand.NewPCG(1, uint64(packs)))
	f.put(t, "config", []byte(`{"version":1}`))
	for _, prefix := range []string{"keys/", "index/", "snapshots/", "snapshots/", "drills/"} {
		f.putNamed(t, prefix, randBytes(r, 200+r.IntN(500)))
	}
	for range packs {
		b := randBytes(r, 100+r.IntN(3000))
		sum := sha256.Sum256(b)
		h := hex.EncodeToString(sum[:])
		name := "data/" + h[:2] + "/" + h
		f.put(t, name, b)
		f.packs = append(f.packs, name)
	}
	return f
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func (f *fakeRepo) put(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := f.st.Put(context.Background(), name, store.Bytes(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeRepo) putNamed(t *testing.T, prefix string, b []byte) string {
	t.Helper()
	sum := sha256.Sum256(b)
	name := prefix + hex.EncodeToString(sum[:])
	f.put(t, name, b)
	return name
}

// flip changes one byte of an object in place, as a failing disk would.
func (f *fakeRepo) flip(t *testing.T, name string) {
	t.Helper()
	p := filepath.Join(f.dir, filepath.FromSlash(name))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeRepo) objects(t *testing.T, prefix string) []string {
	t.Helper()
	var out []string
	if err := f.st.List(context.Background(), prefix, func(i store.Info) error { out = append(out, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func mustCheck(t *testing.T, st store.Store, opt KeylessOptions) *KeylessReport {
	t.Helper()
	rep, err := CheckKeyless(context.Background(), st, opt)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func problemsText(rep *KeylessReport) string {
	var b strings.Builder
	for _, p := range rep.Problems {
		fmt.Fprintf(&b, "%s %s\n", p.Kind, p.Object)
	}
	return b.String()
}

func TestKeylessIntactRepository(t *testing.T) {
	f := newFakeRepo(t, 12)
	rep := mustCheck(t, f.st, KeylessOptions{ReadDataPercent: 100})
	if len(rep.Problems) != 0 || rep.Errors() != 0 {
		t.Fatalf("an intact repository: %s", problemsText(rep))
	}
	if rep.Objects != 18 || rep.Packs != 12 || rep.PacksRead != 12 || rep.ObjectsHashed != 17 || rep.BytesRead != rep.Bytes-int64(len(`{"version":1}`)) {
		t.Fatalf("counts: %+v", rep)
	}
	names := mustCheck(t, f.st, KeylessOptions{})
	if names.PacksRead != 0 || names.ObjectsHashed != 5 || len(names.Problems) != 0 {
		t.Fatalf("without read-data only the small objects are read: %+v", names)
	}
}

func TestKeylessFindsDamage(t *testing.T) {
	f := newFakeRepo(t, 6)
	f.flip(t, f.packs[2])
	index := f.objects(t, "index/")[0]
	f.flip(t, index)
	rep := mustCheck(t, f.st, KeylessOptions{})
	if got, want := problemsText(rep), "damaged "+index+"\n"; got != want {
		t.Fatalf("names only: %q, want %q (a flipped pack is found by reading it)", got, want)
	}
	rep = mustCheck(t, f.st, KeylessOptions{ReadDataPercent: 100})
	want := []string{"damaged " + f.packs[2], "damaged " + index}
	slices.Sort(want)
	if got := problemsText(rep); got != strings.Join(want, "\n")+"\n" {
		t.Fatalf("read-data: %q, want %q", got, want)
	}
	if !strings.Contains(rep.Problems[0].Message+rep.Problems[1].Message, "does not match its name") {
		t.Fatalf("message: %+v", rep.Problems)
	}
}

func TestKeylessNamesAndSizes(t *testing.T) {
	f := newFakeRepo(t, 3)
	f.put(t, "data/ab/"+strings.Repeat("ab", 32), []byte("short"))
	f.put(t, "notes.txt", []byte("hello"))
	f.put(t, "data/00/"+strings.Repeat("ab", 32), make([]byte, 100))
	big := make([]byte, 65<<10)
	f.putNamed(t, "keys/", big)
	if err := f.st.Delete(context.Background(), "config"); err != nil {
		t.Fatal(err)
	}
	rep := mustCheck(t, f.st, KeylessOptions{})
	got := problemsText(rep)
	for _, want := range []string{
		"missing config\n", "foreign notes.txt\n", "foreign data/00/" + strings.Repeat("ab", 32) + "\n",
		"damaged data/ab/" + strings.Repeat("ab", 32) + "\n", "damaged keys/",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	if rep.Errors() != 3 {
		t.Errorf("errors %d, want 3 (foreign objects are warnings): %s", rep.Errors(), got)
	}
}

func TestKeylessEmptyRepository(t *testing.T) {
	st, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	rep := mustCheck(t, st, KeylessOptions{ReadDataPercent: 100})
	if !rep.Empty || len(rep.Problems) != 0 || rep.Problems == nil {
		t.Fatalf("empty: %+v", rep)
	}
}

func TestKeylessStoreFaults(t *testing.T) {
	f := newFakeRepo(t, 4)
	faulty := store.NewFaulty(f.st)
	faulty.Add(store.FaultRule{Op: "get", Prefix: f.packs[1], Times: -1, Err: store.ErrNotFound})
	faulty.Add(store.FaultRule{Op: "get", Prefix: "snapshots/", Times: 1, AfterBytes: 10})
	rep := mustCheck(t, faulty, KeylessOptions{ReadDataPercent: 100})
	got := problemsText(rep)
	if !strings.Contains(got, "missing "+f.packs[1]+"\n") || !strings.Contains(got, "unreadable snapshots/") || rep.Errors() != 2 {
		t.Fatalf("faults: %s", got)
	}
	faulty.Add(store.FaultRule{Op: "list", Times: 1})
	if _, err := CheckKeyless(context.Background(), faulty, KeylessOptions{}); !errors.Is(err, store.ErrInjected) {
		t.Fatalf("a failed listing: %v", err)
	}
}

func TestKeylessRefusesBadShare(t *testing.T) {
	f := newFakeRepo(t, 1)
	for _, p := range []float64{-1, 100.5, math.NaN()} {
		if _, err := CheckKeyless(context.Background(), f.st, KeylessOptions{ReadDataPercent: p}); err == nil {
			t.Errorf("share %v accepted", p)
		}
	}
}

func TestKeylessCancelled(t *testing.T) {
	f := newFakeRepo(t, 4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := CheckKeyless(ctx, f.st, KeylessOptions{ReadDataPercent: 100}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// gate counts Gets in flight.
type gate struct {
	store.Store
	now, peak atomic.Int32
}

func (g *gate) Get(ctx context.Context, name string, off, n int64, fn func(io.Reader) error) error {
	cur := g.now.Add(1)
	defer g.now.Add(-1)
	for {
		p := g.peak.Load()
		if cur <= p || g.peak.CompareAndSwap(p, cur) {
			break
		}
	}
	return g.Store.Get(ctx, name, off, n, fn)
}

func TestKeylessBoundsDownloads(t *testing.T) {
	f := newFakeRepo(t, 40)
	g := &gate{Store: f.st}
	var mu sync.Mutex
	var total, done int64
	count := 0
	rep := mustCheck(t, g, KeylessOptions{ReadDataPercent: 100, Workers: 3,
		ToRead: func(n int, size int64) { count, total = n, size },
		Read:   func(size int64) { mu.Lock(); done += size; mu.Unlock() }})
	if p := g.peak.Load(); p > 3 || p < 1 {
		t.Fatalf("peak downloads %d, want 1..3", p)
	}
	if count != rep.ObjectsHashed || total != done || total != rep.BytesRead {
		t.Fatalf("progress: %d objects %d bytes, done %d; report %+v", count, total, done, rep)
	}
}

func TestSamplePacks(t *testing.T) {
	f := newFakeRepo(t, 50)
	var packs []store.Info
	if err := f.st.List(context.Background(), "data/", func(i store.Info) error { packs = append(packs, i); return nil }); err != nil {
		t.Fatal(err)
	}
	names := func(is []store.Info) []string {
		var out []string
		for _, i := range is {
			out = append(out, i.Name)
		}
		slices.Sort(out)
		return out
	}
	a := names(SamplePacks(packs, 10, "2026-12-05"))
	if len(a) != 5 {
		t.Fatalf("10%% of 50: %d packs", len(a))
	}
	rev := slices.Clone(packs)
	slices.Reverse(rev)
	if b := names(SamplePacks(rev, 10, "2026-12-05")); !slices.Equal(a, b) {
		t.Fatalf("the same seed picks other packs when listed in another order: %v %v", a, b)
	}
	if c := names(SamplePacks(packs, 10, "2026-12-06")); slices.Equal(a, c) {
		t.Fatalf("another seed picks the same packs")
	}
	for pct, want := range map[float64]int{0: 0, 0.1: 1, 2: 1, 99: 50, 100: 50} {
		if n := len(SamplePacks(packs, pct, "s")); n != want {
			t.Errorf("%v%% of 50: %d, want %d", pct, n, want)
		}
	}
	// Over many seeds every pack is drawn about as often as the others.
	seen := map[string]int{}
	for s := range 400 {
		for _, p := range SamplePacks(packs, 10, fmt.Sprint(s)) {
			seen[p.Name]++
		}
	}
	for _, p := range packs {
		if n := seen[p.Name]; n < 15 || n > 75 {
			t.Errorf("%s drawn %d times in 400 samples of 10%%, want about 40", p.Name, n)
		}
	}
	rep := mustCheck(t, f.st, KeylessOptions{ReadDataPercent: 10, SampleSeed: "2026-12-05"})
	if rep.PacksRead != 5 || rep.SampleSeed != "2026-12-05" {
		t.Fatalf("report: %+v", rep)
	}
}

// missingPackReceipts is a stand-in for the vault's receipts: one receipt
// needing the packs it names.
type missingPackReceipts struct {
	needs []string
	got   map[string]int64
}

func (m *missingPackReceipts) CheckReceipts(_ context.Context, _ store.Store, objects map[string]int64) ([]Problem, error) {
	m.got = objects
	var ps []Problem
	for _, n := range m.needs {
		if _, ok := objects[n]; !ok {
			ps = append(ps, Problem{Object: n, Kind: ProblemMissing, Message: "needed by a receipt"})
		}
	}
	return ps, nil
}

func TestKeylessReceiptsHook(t *testing.T) {
	f := newFakeRepo(t, 3)
	if err := f.st.Delete(context.Background(), f.packs[0]); err != nil {
		t.Fatal(err)
	}
	hook := &missingPackReceipts{needs: f.packs}
	rep := mustCheck(t, f.st, KeylessOptions{Receipts: hook})
	if got := problemsText(rep); got != "missing "+f.packs[0]+"\n" || !rep.ReceiptsChecked || len(hook.got) != 8 {
		t.Fatalf("receipts: %q, %+v, %d objects given", got, rep, len(hook.got))
	}
	if rep := mustCheck(t, f.st, KeylessOptions{}); rep.ReceiptsChecked || len(rep.Problems) != 0 {
		t.Fatalf("no hook: %+v", rep)
	}
}

func TestParsePercent(t *testing.T) {
	for in, want := range map[string]float64{"10": 10, "10%": 10, "2.5%": 2.5, "100": 100, " 50% ": 50} {
		if got, err := ParsePercent(in); err != nil || got != want {
			t.Errorf("ParsePercent(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-5", "101", "NaN", "Inf", "10%%", "ten", "1e400"} {
		if _, err := ParsePercent(in); err == nil || !strings.Contains(err.Error(), "at most 100") {
			t.Errorf("ParsePercent(%q) = %v, want a clear error", in, err)
		}
	}
}

func FuzzParsePercent(f *testing.F) {
	for _, s := range []string{"10", "10%", "2.5%", "0", "100.0000001", "NaN%", "0x1p-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParsePercent(s)
		if err == nil && !(v > 0 && v <= 100) {
			t.Fatalf("ParsePercent(%q) = %v without an error", s, v)
		}
	})
}
