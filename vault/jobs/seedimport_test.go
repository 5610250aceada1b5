package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/seedtest"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// importEnv is a vault on a local store, a tenant, and its signing key.
type importEnv struct {
	data   store.Store
	sw     store.Swapper
	ledger *ledger.Ledger
	clock  *clocktest.Clock
	tenant *registry.Tenant
	key    *crypto.SigningKey
}

func newImportEnv(t testing.TB) *importEnv {
	t.Helper()
	l, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	sw, _ := store.As[store.Swapper](l)
	clk := clocktest.New(time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC))
	led, err := ledger.New(l, l, clk, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := seedtest.Key(t)
	return &importEnv{data: l, sw: sw, ledger: led, clock: clk, key: k,
		tenant: &registry.Tenant{ID: tid, Name: "acme", SigningKey: k.Public()}}
}

func (e *importEnv) options(dir string) ImportOptions {
	return ImportOptions{Data: e.data, Meta: e.data, Swap: e.sw, Ledger: e.ledger, Tenant: e.tenant, Dir: dir,
		Workers: 3, WorkDir: filepath.Join(filepath.Dir(dir), "work"), Clock: e.clock}
}

// testSeed is a seed written as an export writes one: objects, then
// seed.Finish (real parity, signed manifest).
type testSeed struct {
	dir     string
	objects map[string][]byte
	id      string
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeSeed writes packs random packs, an index file, and two snapshots
// with their receipts, and finishes the seed for tenant tenantID.
func writeSeed(t testing.TB, k *crypto.SigningKey, tenantID string, packs int) *testSeed {
	t.Helper()
	ts := &testSeed{dir: filepath.Join(t.TempDir(), "disk"), objects: map[string][]byte{}, id: strings.Repeat("5e", 32)}
	root := filepath.Join(ts.dir, seed.RootDir)
	put := func(name string, b []byte) {
		p := filepath.Join(root, seed.ObjectsDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ts.objects[name] = b
	}
	r := rand.New(rand.NewPCG(3, uint64(packs)))
	var ids []string
	for i := range packs {
		b := make([]byte, 1000+r.IntN(8<<10)+i)
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		h := sha(b)
		ids = append(ids, h)
		put("data/"+h[:2]+"/"+h, b)
	}
	slices.Sort(ids)
	put("index/"+sha([]byte("index 1")), []byte("index 1"))
	for i := range 2 {
		snap := []byte(fmt.Sprintf("sealed snapshot %d", i))
		rc := &vaultapi.Receipt{Version: 1, Snapshot: sha(snap), Name: fmt.Sprintf("vm%d", i), Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
			Source: "image", Disks: []vaultapi.ReceiptDisk{{Size: 10 << 20, DataBytes: 3 << 20}}, Packs: ids, Seed: ts.id}
		b, err := rc.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		put("receipts/"+sha(b), b)
		put("snapshots/"+sha(snap), snap)
	}
	m := &seed.Manifest{Format: seed.Format, ID: ts.id, Tenant: tenantID, TenantName: "acme", Repository: strings.Repeat("cd", 32),
		Created: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Host: "pc1", Signer: k.Public()}
	if err := seed.Finish(context.Background(), root, m, k, seed.FinishOptions{}); err != nil {
		t.Fatal(err)
	}
	return ts
}

func (ts *testSeed) bytes() int64 {
	var n int64
	for _, b := range ts.objects {
		n += int64(len(b))
	}
	return n
}

// listing is every object of the vault's store with its size and time.
func listing(t testing.TB, st store.Store, prefix string) []string {
	t.Helper()
	var out []string
	if err := st.List(context.Background(), prefix, func(i store.Info) error {
		out = append(out, fmt.Sprintf("%s %d %d", i.Name, i.Size, i.ModTime.UnixNano()))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// checkVaultHolds checks that the tenant's space holds exactly the seed's
// objects, byte for byte, and that usage counts exactly them.
func (e *importEnv) checkVaultHolds(t *testing.T, ts *testSeed) {
	t.Helper()
	prefix := ledger.ObjectKey(tid, "")
	var stored int64
	n := 0
	err := e.data.List(ctx, prefix, func(i store.Info) error {
		want, ok := ts.objects[strings.TrimPrefix(i.Name, prefix)]
		if !ok {
			return fmt.Errorf("the vault holds %s, which is not the seed's", i.Name)
		}
		got, err := store.ReadAllLimit(ctx, e.data, i.Name, 1<<20)
		if err != nil || !bytes.Equal(got, want) {
			return fmt.Errorf("%s differs from the seed's (%v)", i.Name, err)
		}
		stored += i.Size
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ts.objects) {
		t.Fatalf("the vault holds %d objects, the seed %d", n, len(ts.objects))
	}
	u, err := e.ledger.Usage(ctx, tid)
	if err != nil {
		t.Fatal(err)
	}
	packs := 0
	for name := range ts.objects {
		if strings.HasPrefix(name, "data/") {
			packs++
		}
	}
	if u.StoredBytes != stored || u.Objects != int64(n) || u.Packs != int64(packs) || u.Snapshots != 2 || len(u.Reserved) != 0 {
		t.Fatalf("usage %+v, want %d bytes in %d objects, %d packs, 2 snapshots, nothing reserved", u, stored, n, packs)
	}
	if u.LogicalBytes != 2*(10<<20) || u.DataBytes != 2*(3<<20) {
		t.Fatalf("usage reports %d logical and %d data bytes, want the receipts' %d and %d", u.LogicalBytes, u.DataBytes, 2*(10<<20), 2*(3<<20))
	}
}

func TestImportSeedIntoAnEmptyTenant(t *testing.T) {
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 20)
	o := e.options(ts.dir)
	var phases []string
	var done int64
	o.Progress = ImportProgress{Phase: func(name string, _ int, _ int64) { phases = append(phases, name) },
		Done: func(n int64) { done += n }}
	o.Workers = 1 // Done is summed without a lock
	rep, err := ImportSeed(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	e.checkVaultHolds(t, ts)
	if rep.Seed != ts.id || rep.Tenant != tid || rep.Objects != len(ts.objects) || rep.Bytes != ts.bytes() ||
		rep.Uploaded != len(ts.objects) || rep.UploadedBytes != ts.bytes() || rep.Present != 0 || !rep.Clean ||
		len(rep.Repaired) != 0 || rep.ManifestCopy || rep.Signer != crypto.SigningKeyFingerprint(e.key.Public()) {
		t.Fatalf("report %+v", rep)
	}
	if !slices.Equal(phases, []string{PhaseCheck, PhaseUpload}) || done < 2*ts.bytes() {
		t.Fatalf("progress: phases %v, %d bytes done", phases, done)
	}
	book, err := LoadSeedBook(ctx, e.sw, tid)
	if err != nil {
		t.Fatal(err)
	}
	info := book.Find(ts.id)
	if info == nil || info.State != vaultapi.SeedImported || info.Report == nil || info.Report.Uploaded != rep.Uploaded {
		t.Fatalf("seed book after the import: %+v", info)
	}

	before := listing(t, e.data, "")
	_, err = ImportSeed(ctx, e.options(ts.dir))
	if !errors.Is(err, ErrSeedImported) || !strings.Contains(err.Error(), "was imported on") || !strings.Contains(err.Error(), "nothing to do") {
		t.Fatalf("second import: %v", err)
	}
	if after := listing(t, e.data, ""); !slices.Equal(before, after) {
		t.Fatalf("the second import wrote to the store:\n%v\n%v", before, after)
	}
}

// The agent registered the seed and sent its index file, receipts and
// snapshots at export: the import counts them present and uploads the
// rest; usage stays exact.
func TestImportSeedSkipsWhatTheVaultHolds(t *testing.T) {
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 10)
	s, err := seed.Open(ts.dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RegisterSeed(ctx, e.sw, e.data, e.tenant, s.Body, s.Sig, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	small := 0
	for name, b := range ts.objects {
		if strings.HasPrefix(name, "data/") {
			continue
		}
		k, _ := vaultapi.ParseRepoName(name)
		res, err := e.ledger.Reserve(ctx, e.tenant, name, k, int64(len(b)), ledger.Meta{LogicalBytes: 10 << 20, DataBytes: 3 << 20}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.data.Put(ctx, ledger.ObjectKey(tid, name), store.Bytes(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		if err := res.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		small++
	}
	rep, err := ImportSeed(ctx, e.options(ts.dir))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Present != small || rep.Uploaded != 10 || !rep.Clean {
		t.Fatalf("report: %d present, %d uploaded; want %d and 10", rep.Present, rep.Uploaded, small)
	}
	e.checkVaultHolds(t, ts)
}

// rewriteManifest replaces both copies of the manifest with body signed
// by k.
func rewriteManifest(t *testing.T, dir string, body []byte, k *crypto.SigningKey) {
	t.Helper()
	root := seed.Root(dir)
	sig := seed.Sign(k, body)
	for name, b := range map[string][]byte{"SEED.json": body, "SEED.copy.json": body, "SEED.sig": sig, "SEED.copy.sig": sig} {
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestImportSeedRefusesAForeignOrTamperedSeed(t *testing.T) {
	for _, tc := range []struct {
		name, want, code string
		setup            func(t *testing.T, e *importEnv) string
	}{
		{"another tenant's seed", "belongs to tenant", vaultapi.CodeBadSeed, func(t *testing.T, e *importEnv) string {
			return writeSeed(t, e.key, strings.Repeat("9", 24), 3).dir
		}},
		{"tampered manifest", "does not verify", vaultapi.CodeBadSeed, func(t *testing.T, e *importEnv) string {
			ts := writeSeed(t, e.key, tid, 3)
			s, _ := seed.Open(ts.dir)
			body := bytes.Replace(s.Body, []byte(`"pc1"`), []byte(`"pc2"`), 1)
			rewriteManifest(t, ts.dir, body, e.key)
			for _, n := range []string{"SEED.sig", "SEED.copy.sig"} { // the old signature over new bytes
				if err := os.WriteFile(filepath.Join(seed.Root(ts.dir), n), s.Sig, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			return ts.dir
		}},
		{"another key", "was signed by key", vaultapi.CodeBadSeed, func(t *testing.T, e *importEnv) string {
			e.tenant.SigningKey = seedtest.Key(t).Public()
			return writeSeed(t, e.key, tid, 3).dir
		}},
		{"a tenant without a signing key", "has no signing key", vaultapi.CodeNoSigningKey, func(t *testing.T, e *importEnv) string {
			e.tenant.SigningKey = ""
			return writeSeed(t, e.key, tid, 3).dir
		}},
		{"no seed", "holds no seed", vaultapi.CodeBadSeed, func(t *testing.T, e *importEnv) string {
			return t.TempDir()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newImportEnv(t)
			dir := tc.setup(t, e)
			before := listing(t, e.data, "")
			_, err := ImportSeed(ctx, e.options(dir))
			var ve *vaultapi.Error
			if !errors.As(err, &ve) || ve.Code != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("import: %v; want code %s and %q", err, tc.code, tc.want)
			}
			if after := listing(t, e.data, ""); !slices.Equal(before, after) {
				t.Fatalf("a refused import wrote to the store:\n%v\n%v", before, after)
			}
		})
	}
}

// A damaged first copy of the manifest: the second one is used and the
// report says so.
func TestImportSeedUsesTheManifestsSecondCopy(t *testing.T) {
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 5)
	p := filepath.Join(seed.Root(ts.dir), "SEED.json")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, bytes.Replace(b, []byte(`"pc1"`), []byte(`"pcX"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := ImportSeed(ctx, e.options(ts.dir))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.ManifestCopy || !rep.Clean {
		t.Fatalf("report %+v", rep)
	}
	e.checkVaultHolds(t, ts)
}

// An import cancelled after some objects (the operator's ^C, a lost
// connection) completes when run again, with exact usage.
func TestImportSeedResumesAfterAnInterruption(t *testing.T) {
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 30)
	o := e.options(ts.dir)
	cctx, cancel := context.WithCancel(ctx)
	uploading, n := false, 0
	o.Workers = 1
	o.Progress = ImportProgress{Phase: func(name string, _ int, _ int64) { uploading = name == PhaseUpload },
		Done: func(int64) {
			if n++; uploading && n > 12 {
				cancel()
			}
		}}
	if _, err := ImportSeed(cctx, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted import: %v", err)
	}
	got := len(listing(t, e.data, ledger.ObjectKey(tid, "")))
	if got == 0 || got >= len(ts.objects) {
		t.Fatalf("the interrupted import stored %d of %d objects", got, len(ts.objects))
	}
	rep, err := ImportSeed(ctx, e.options(ts.dir))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Present != got || rep.Uploaded != len(ts.objects)-got {
		t.Fatalf("rerun: %d present, %d uploaded; want %d and %d", rep.Present, rep.Uploaded, got, len(ts.objects)-got)
	}
	e.checkVaultHolds(t, ts)
}

// A run killed with -9 leaves reservations (some objects stored, some
// not) and its lease: the next run, once the lease expired, settles them
// at once and usage is exact right after it.
func TestImportSeedSettlesAKilledRunsReservations(t *testing.T) {
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 12)
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range ts.objects {
			if strings.HasPrefix(n, "data/") && !yield(n) {
				return
			}
		}
	})
	job := ledger.Meta{Job: ImportJob(tid)}
	for i, name := range names[:6] {
		b := ts.objects[name]
		if _, err := e.ledger.Reserve(ctx, e.tenant, name, vaultapi.KindPack, int64(len(b)), job, time.Hour); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 { // stored before the kill, not yet committed
			if err := e.data.Put(ctx, ledger.ObjectKey(tid, name), store.Bytes(b), int64(len(b))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ok, err := TakeLease(ctx, e.sw, ImportJob(tid), "killed-run", e.clock.Now(), importLeaseTTL); !ok || err != nil {
		t.Fatal(ok, err)
	}
	_, err := ImportSeed(ctx, e.options(ts.dir))
	if err == nil || !strings.Contains(err.Error(), "another seed import for tenant \"acme\" is running") {
		t.Fatalf("import while the killed run's lease holds: %v", err)
	}
	e.clock.Advance(importLeaseTTL + time.Second)
	rep, err := ImportSeed(ctx, e.options(ts.dir))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Present != 3 || rep.Uploaded != len(ts.objects)-3 {
		t.Fatalf("rerun: %d present, %d uploaded", rep.Present, rep.Uploaded)
	}
	e.checkVaultHolds(t, ts)
}

func TestImportSeedRefusesBeyondTheQuota(t *testing.T) {
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 10)
	e.tenant.Quota = ts.bytes() - 1
	_, err := ImportSeed(ctx, e.options(ts.dir))
	if !errors.Is(err, store.ErrNoSpace) || !strings.Contains(err.Error(), "nothing was imported") {
		t.Fatalf("import over the quota: %v", err)
	}
	if got := listing(t, e.data, ledger.ObjectKey(tid, "")); len(got) != 0 {
		t.Fatalf("an import over the quota stored %v", got)
	}
	if book, _ := LoadSeedBook(ctx, e.sw, tid); book.Find(ts.id) != nil {
		t.Fatal("an import refused for the quota registered the seed")
	}
	e.tenant.Quota = ts.bytes()
	if _, err := ImportSeed(ctx, e.options(ts.dir)); err != nil {
		t.Fatalf("import that just fits: %v", err)
	}
	e.checkVaultHolds(t, ts)
}

// An object in the vault with another size than the seed's is damage in
// the vault: refused before any upload.
func TestImportSeedRefusesAVaultObjectOfAnotherSize(t *testing.T) {
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 4)
	var name string
	for n := range ts.objects {
		if strings.HasPrefix(n, "index/") {
			name = n
		}
	}
	if err := e.data.Put(ctx, ledger.ObjectKey(tid, name), store.Bytes("short"), 5); err != nil {
		t.Fatal(err)
	}
	_, err := ImportSeed(ctx, e.options(ts.dir))
	if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "cofferd check") {
		t.Fatalf("import over a damaged vault object: %v", err)
	}
	if got := listing(t, e.data, ledger.ObjectKey(tid, "")); len(got) != 1 {
		t.Fatalf("the refused import stored %v", got)
	}
}

// damage overwrites, truncates and deletes files of the seed in turn.
func damage(t *testing.T, ts *testSeed, files []string) {
	t.Helper()
	root := seed.Root(ts.dir)
	for i, name := range files {
		p := seed.FilePath(root, seed.File{Name: name})
		var err error
		switch i % 3 {
		case 0:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_WRONLY, 0); err == nil {
				_, err = f.WriteAt([]byte("damaged bytes"), 100)
				f.Close()
			}
		case 1:
			err = os.Truncate(p, 10)
		case 2:
			err = os.Remove(p)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func packNames(ts *testSeed) []string {
	var out []string
	for n := range ts.objects {
		if strings.HasPrefix(n, "data/") {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func TestImportSeedRepairsDamageWithinTheParity(t *testing.T) {
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 95) // 100 objects
	hit := packNames(ts)[10:13]        // 3%
	damage(t, ts, hit)
	rep, err := ImportSeed(ctx, e.options(ts.dir))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rep.Repaired {
		if !r.Rebuilt || r.Problem == "" {
			t.Fatalf("repaired %+v", r)
		}
		got = append(got, r.Name)
	}
	if !slices.Equal(got, hit) || !rep.Clean {
		t.Fatalf("report lists %v as repaired, want %v", got, hit)
	}
	e.checkVaultHolds(t, ts)
	if left, _ := os.ReadDir(e.options(ts.dir).WorkDir); len(left) != 0 {
		t.Fatalf("rebuilt files left in the work dir: %v", left)
	}
}

func TestImportSeedRefusesDamageBeyondTheParity(t *testing.T) {
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 95)
	hit := packNames(ts)[:20] // 20%
	damage(t, ts, hit)
	before := listing(t, e.data, "")
	_, err := ImportSeed(ctx, e.options(ts.dir))
	var u *seed.Unrepairable
	if !errors.As(err, &u) || !strings.Contains(err.Error(), hit[0]) || !strings.Contains(err.Error(), "acme") {
		t.Fatalf("import of a seed damaged beyond its parity: %v", err)
	}
	after := slices.DeleteFunc(listing(t, e.data, ""), func(s string) bool { return strings.HasPrefix(s, "vault/leases/") })
	if !slices.Equal(before, after) {
		t.Fatalf("a refused import changed the store:\n%v\n%v", before, after)
	}
}

// FuzzImportSeedManifest feeds manifest bytes from a disk to the import's
// first step: any bytes give an error or a verified seed, never a panic,
// and nothing unsigned is accepted.
func FuzzImportSeedManifest(f *testing.F) {
	e := newImportEnv(f)
	ts := writeSeed(f, e.key, tid, 2)
	s, err := seed.Open(ts.dir)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.Body, s.Sig)
	f.Add([]byte("{}"), []byte("00"))
	f.Add(bytes.Replace(s.Body, []byte(tid), []byte(strings.Repeat("9", 24)), 1), s.Sig)
	root := seed.Root(ts.dir)
	f.Fuzz(func(t *testing.T, body, sig []byte) {
		for name, b := range map[string][]byte{"SEED.json": body, "SEED.copy.json": body, "SEED.sig": sig, "SEED.copy.sig": sig} {
			if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := openTenantSeed(e.tenant, ts.dir)
		if err != nil {
			return
		}
		if seed.Verify(e.tenant.SigningKey, got.Body, got.Sig) != nil || got.Manifest.Tenant != tid {
			t.Fatal("accepted a manifest that is not the tenant's or does not verify")
		}
	})
}

// lostReply stores the object of its nth Put and then fails it, as a
// connection lost after the store wrote: the import must count it.
type lostReply struct {
	store.Store
	n, puts int
}

func (l *lostReply) Put(ctx context.Context, name string, r io.ReaderAt, size int64) error {
	if l.puts++; l.puts != l.n {
		return l.Store.Put(ctx, name, r, size)
	}
	if err := l.Store.Put(ctx, name, r, size); err != nil {
		return err
	}
	return errors.New("connection reset after the write")
}

// A store that fails a Put (nothing stored) or loses a Put's reply (stored):
// the import fails naming the object, and the rerun completes with exact
// usage and no reservation left.
func TestImportSeedFaultingStore(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(store.Store) store.Store
	}{
		{"put fails", func(s store.Store) store.Store {
			f := store.NewFaulty(s)
			f.Add(store.FaultRule{Op: "put", Prefix: "repos/", Skip: 5, Times: 1, Err: &store.PermanentError{Err: errors.New("disk full")}})
			return f
		}},
		{"reply lost", func(s store.Store) store.Store { return &lostReply{Store: s, n: 6} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newImportEnv(t)
			ts := writeSeed(t, e.key, tid, 12)
			o := e.options(ts.dir)
			o.Workers = 1
			o.Data = tc.wrap(e.data)
			_, err := ImportSeed(ctx, o)
			if err == nil || !strings.Contains(err.Error(), "storing ") {
				t.Fatalf("import over a faulting store: %v", err)
			}
			u, _ := e.ledger.Usage(ctx, tid)
			stored := listing(t, e.data, ledger.ObjectKey(tid, ""))
			if len(u.Reserved) != 0 || u.Objects != int64(len(stored)) {
				t.Fatalf("after the failed run: usage %+v, %d objects stored", u, len(stored))
			}
			if _, err := ImportSeed(ctx, e.options(ts.dir)); err != nil {
				t.Fatal(err)
			}
			e.checkVaultHolds(t, ts)
		})
	}
}

// A first copy of the manifest changed to name another tenant (it no
// longer verifies): the second copy, which does, is used.
func TestImportSeedIgnoresAFirstCopyNamingAnotherTenant(t *testing.T) {
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 4)
	p := filepath.Join(seed.Root(ts.dir), "SEED.json")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, bytes.Replace(b, []byte(tid), []byte(strings.Repeat("9", 24)), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := ImportSeed(ctx, e.options(ts.dir))
	if err != nil || !rep.ManifestCopy {
		t.Fatalf("import: %+v, %v", rep, err)
	}
	e.checkVaultHolds(t, ts)
}

// The seed was registered with a manifest listing an object the disk's
// manifest lacks (an export finished again after registering): refused,
// since the waiting snapshots are judged by the registered one.
func TestImportSeedRefusesADiskLackingRegisteredObjects(t *testing.T) {
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 4)
	s, err := seed.Open(ts.dir)
	if err != nil {
		t.Fatal(err)
	}
	m := *s.Manifest
	extra := []byte("a pack the disk lacks")
	h := sha(extra)
	m.Objects = slices.Clone(m.Objects)
	m.Objects = append(m.Objects, seed.File{Name: "data/" + h[:2] + "/" + h, Size: int64(len(extra)), SHA256: h})
	slices.SortFunc(m.Objects, func(a, b seed.File) int { return strings.Compare(a.Name, b.Name) })
	body, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := RegisterSeed(ctx, e.sw, e.data, e.tenant, body, seed.Sign(e.key, body), e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = ImportSeed(ctx, e.options(ts.dir))
	if err == nil || !strings.Contains(err.Error(), "lacks 1 objects") || !strings.Contains(err.Error(), h) {
		t.Fatalf("import of a disk lacking a registered object: %v", err)
	}
	if got := listing(t, e.data, ledger.ObjectKey(tid, "")); len(got) != 0 {
		t.Fatalf("the refused import stored %v", got)
	}
}

// An import whose lease another import took (it was held up past the
// lease's expiry) stops, saying so, instead of writing beside the other.
func TestImportSeedStopsWhenItLosesItsLease(t *testing.T) {
	old := importLeaseRenew
	importLeaseRenew = 5 * time.Millisecond
	defer func() { importLeaseRenew = old }()
	e := newImportEnv(t)
	ts := writeSeed(t, e.key, tid, 10)
	o := e.options(ts.dir)
	o.Workers = 1
	stolen := false
	o.Progress = ImportProgress{Phase: func(name string, _ int, _ int64) {
		if name != PhaseUpload || stolen {
			return
		}
		stolen = true
		// The import renews every 5 ms on the same clock: a renewal
		// between the advance and the take extends the lease again, so
		// advance and take until the take wins.
		taken := false
		for range 50 {
			e.clock.Advance(importLeaseTTL + time.Second)
			ok, err := TakeLease(ctx, e.sw, ImportJob(tid), "another", e.clock.Now(), importLeaseTTL)
			if err != nil {
				t.Errorf("taking the expired lease: %v", err)
			}
			if taken = ok; ok {
				break
			}
		}
		if !taken {
			t.Error("the expired lease was never taken")
		}
		time.Sleep(100 * time.Millisecond) // a renewal comes in between
	}}
	_, err := ImportSeed(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "lost its lease to another import") {
		t.Fatalf("import that lost its lease: %v", err)
	}
	if book, _ := LoadSeedBook(ctx, e.sw, tid); book.Find(ts.id) != nil && book.Find(ts.id).State == vaultapi.SeedImported {
		t.Fatal("an import that lost its lease marked the seed imported")
	}
}
