package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/seedtest"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// exportSeed writes a small seed for tenant tid signed by k, as coffer
// seed export would: packs, an index file, a snapshot and its receipt.
func exportSeed(t *testing.T, k *crypto.SigningKey, tid string) (dir string, objects map[string][]byte) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "disk")
	root := filepath.Join(dir, seed.RootDir)
	objects = map[string][]byte{}
	put := func(prefix string, b []byte) string {
		s := sha256.Sum256(b)
		h := hex.EncodeToString(s[:])
		name := prefix + h
		if prefix == "data/" {
			name = "data/" + h[:2] + "/" + h
		}
		p := filepath.Join(root, seed.ObjectsDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		objects[name] = b
		return h
	}
	var packs []string
	for i := range 6 {
		packs = append(packs, put("data/", []byte(strings.Repeat(fmt.Sprintf("pack %d ", i), 500+i))))
	}
	put("index/", []byte("index"))
	snap := put("snapshots/", []byte("sealed snapshot"))
	rc := &vaultapi.Receipt{Version: 1, Snapshot: snap, Name: "vm1", Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Source: "image",
		Disks: []vaultapi.ReceiptDisk{{Size: 1 << 20, DataBytes: 1 << 10}}}
	rc.Packs = slices.Sorted(slices.Values(packs))
	b, err := rc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	put("receipts/", b)
	m := &seed.Manifest{Format: seed.Format, ID: strings.Repeat("ab", 32), Tenant: tid, TenantName: "acme",
		Repository: strings.Repeat("cd", 32), Created: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Host: "pc1", Signer: k.Public()}
	if err := seed.Finish(context.Background(), root, m, k, seed.FinishOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir, objects
}

// seedTenant makes tenant acme in the vault state in dir, gives it a new
// signing key, and opens the state (the caller closes data).
func seedTenant(t *testing.T, dir string) (store.Store, *ledger.Ledger, *registry.Tenant, *crypto.SigningKey) {
	t.Helper()
	if r := cofferd(t, dir, "tenant", "create", "acme"); r.code != 0 {
		t.Fatalf("tenant create: %+v", r)
	}
	k := seedtest.Key(t)
	g := &globals{storeURL: "file://" + dir, clock: clock.Real}
	data, reg, led, err := g.openState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tn, err := reg.Resolve(context.Background(), "acme")
	if err == nil {
		tn, err = reg.SetSigningKey(context.Background(), tn.ID, k.Public())
	}
	if err != nil {
		data.Close()
		t.Fatal(err)
	}
	return data, led, tn, k
}

// seed import through the command: the summary, the objects in the
// tenant's space, usage; a second run refused; seed list and show give the
// report.
func TestSeedImportListShow(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data, led, tn, k := seedTenant(t, dir)
	defer data.Close()
	seedDir, objects := exportSeed(t, k, tn.ID)

	if r := cofferd(t, dir, "seed", "import", seedDir); r.code != exitUsage {
		t.Fatalf("import without --tenant: %+v", r)
	}
	r := cofferd(t, dir, "seed", "import", "--tenant", "acme", seedDir)
	if r.code != 0 || !strings.Contains(r.stdout, fmt.Sprintf("imported into tenant acme: %d files", len(objects))) ||
		!strings.Contains(r.stdout, "MB/s") || !strings.Contains(r.stdout, "objects/s") || !strings.Contains(r.stdout, "signed by "+crypto.SigningKeyFingerprint(k.Public())) {
		t.Fatalf("seed import: %+v", r)
	}
	var total int64
	for name, b := range objects {
		got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(ledger.ObjectKey(tn.ID, name))))
		if err != nil || string(got) != string(b) {
			t.Fatalf("%s in the vault: %v", name, err)
		}
		total += int64(len(b))
	}
	u, err := led.Usage(ctx, tn.ID)
	if err != nil || u.StoredBytes != total || u.Objects != int64(len(objects)) {
		t.Fatalf("usage %+v (%v), want %d bytes in %d objects", u, err, total, len(objects))
	}

	r = cofferd(t, dir, "--json", "seed", "import", "--tenant", "acme", seedDir)
	if r.code != exitFailure || !strings.Contains(r.stderr, "nothing to do") {
		t.Fatalf("second import: %+v", r)
	}

	var list seedListOut
	r = cofferd(t, dir, "--json", "seed", "list")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list.Seeds) != 1 || list.Seeds[0].Tenant != "acme" ||
		list.Seeds[0].State != vaultapi.SeedImported || list.Seeds[0].Report == nil || !list.Seeds[0].Report.Clean {
		t.Fatalf("seed list --json: %+v", r)
	}
	if r := cofferd(t, dir, "seed", "list", "--tenant", "acme"); r.code != 0 || !strings.Contains(r.stdout, "abababababab") || !strings.Contains(r.stdout, "clean") {
		t.Fatalf("seed list: %+v", r)
	}
	var show seedShowOut
	r = cofferd(t, dir, "--json", "seed", "show", "--tenant", "acme", "abababab")
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &show) != nil || show.Type != "seed" || show.Report == nil ||
		show.Report.Uploaded != len(objects) || show.Report.Signer != crypto.SigningKeyFingerprint(k.Public()) {
		t.Fatalf("seed show --json: %+v", r)
	}
	if r := cofferd(t, dir, "seed", "show", "--tenant", "acme", strings.Repeat("ab", 32)); r.code != 0 || !strings.Contains(r.stdout, "no file was damaged") {
		t.Fatalf("seed show: %+v", r)
	}
	if r := cofferd(t, dir, "seed", "show", "--tenant", "acme", "cdcdcdcd"); r.code != exitFailure || !strings.Contains(r.stderr, "has no seed cdcdcdcd") {
		t.Fatalf("seed show of an unknown seed: %+v", r)
	}
	if r := cofferd(t, dir, "seed", "show", "--tenant", "acme", "../x"); r.code != exitUsage {
		t.Fatalf("seed show of a malformed id: %+v", r)
	}
}

// TestSeedImportHelperProcess is cofferd in a child process for
// TestSeedImportKilled (it does nothing in a normal run).
func TestSeedImportHelperProcess(t *testing.T) {
	args := os.Getenv("COFFER_SEED_HELPER_ARGS")
	if args == "" {
		return
	}
	os.Exit(run(context.Background(), strings.Split(args, "\n"), os.Stdout, os.Stderr))
}

// An import killed with SIGKILL between storing an object and counting it
// (its reservation left, its lease held) completes when run again once
// the lease expired: no object twice, usage exact, no reservation left.
func TestSeedImportKilled(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	data, led, tn, k := seedTenant(t, dir)
	defer data.Close()
	seedDir, objects := exportSeed(t, k, tn.ID)

	cmd := exec.Command(os.Args[0], "-test.run=^TestSeedImportHelperProcess$")
	cmd.Env = append(os.Environ(), "COFFER_SEED_HELPER_ARGS="+strings.Join([]string{"--store", "file://" + dir,
		"seed", "import", "--tenant", "acme", "--workers", "2", "--pause-after-puts", "4", seedDir}, "\n"))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	paused := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "paused after 4 puts") {
			paused = true
			break
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if !paused {
		t.Fatal("the import never paused")
	}
	u, err := led.Usage(ctx, tn.ID)
	if err != nil || len(u.Reserved) == 0 {
		t.Fatalf("the killed import left no reservation: %+v, %v", u, err)
	}

	if r := cofferd(t, dir, "seed", "import", "--tenant", "acme", seedDir); r.code != exitFailure || !strings.Contains(r.stderr, "lease runs until") {
		t.Fatalf("import while the killed run's lease holds: %+v", r)
	}
	later := &stepClock{now: time.Now().Add(3 * time.Minute)}
	r := cofferdAt(t, dir, later, "--json", "seed", "import", "--tenant", "acme", seedDir)
	var out seedImportOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Report.Present < 4 ||
		out.Report.Present+out.Report.Uploaded != len(objects) || !out.Report.Clean {
		t.Fatalf("import after the kill: %+v", r)
	}
	var total int64
	n := 0
	err = filepath.WalkDir(filepath.Join(dir, "repos", tn.ID), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			return nil // a write the kill interrupted: not an object (the local store lists none, and removes it later)
		}
		name, _ := filepath.Rel(filepath.Join(dir, "repos", tn.ID), p)
		b, err := os.ReadFile(p)
		if err != nil || string(b) != string(objects[filepath.ToSlash(name)]) {
			return fmt.Errorf("%s in the vault is not the seed's (%v)", name, err)
		}
		total += int64(len(b))
		n++
		return nil
	})
	if err != nil || n != len(objects) {
		t.Fatalf("%d objects in the vault, want %d (%v)", n, len(objects), err)
	}
	u, err = led.Usage(ctx, tn.ID)
	if err != nil || u.StoredBytes != total || u.Objects != int64(n) || len(u.Reserved) != 0 {
		t.Fatalf("usage after the rerun: %+v (%v), want %d bytes in %d objects", u, err, total, n)
	}
}
