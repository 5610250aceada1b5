package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/check"
	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/vault/jobs"
)

// checkVault makes a vault with tenant acme (escrow; two backups, so two
// packs) and solo (no escrow, no repository yet). It returns the escrow
// identity file and acme's repository directory.
func checkVault(t *testing.T, dir string) (idFile, acmeDir string) {
	t.Helper()
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	imgs := make([]string, 2)
	for i := range imgs {
		imgs[i] = filepath.Join(t.TempDir(), "disk.img")
		if err := diskgen.Generate(imgs[i], 3<<20+int64(i)*4321, uint64(10+i), diskgen.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	idFile = escrowTenantWith(t, dir, "acme", true, func(r *repo.Repo) {
		for _, img := range imgs {
			backupImage(t, r, img)
		}
	})
	if r := cofferd(t, dir, "tenant", "create", "solo"); r.code != 0 {
		t.Fatalf("tenant create: %+v", r)
	}
	return idFile, tenantRepoDir(t, dir)
}

func checkJSON(t *testing.T, dir string, code int, args ...string) checkOut {
	t.Helper()
	r := cofferd(t, dir, append([]string{"--json", "check"}, args...)...)
	var out checkOut
	if r.code != code || strictJSON(r.stdout, &out) != nil || out.Type != "check" {
		t.Fatalf("check %v: %+v; want exit %d", args, r, code)
	}
	return out
}

func tenantOut(t *testing.T, out checkOut, name string) tenantCheckOut {
	t.Helper()
	for _, tc := range out.Tenants {
		if tc.Tenant == name {
			return tc
		}
	}
	t.Fatalf("no tenant %s in %+v", name, out)
	return tenantCheckOut{}
}

func packFiles(t *testing.T, repoDir string) []string {
	t.Helper()
	packs, err := filepath.Glob(filepath.Join(repoDir, "data", "*", "*"))
	if err != nil || len(packs) < 2 {
		t.Fatalf("packs: %v %v", packs, err)
	}
	return packs
}

func objectName(t *testing.T, repoDir, path string) string {
	t.Helper()
	rel, err := filepath.Rel(repoDir, path)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.ToSlash(rel)
}

// An intact vault passes, keyless and with the escrow identity; an empty
// tenant is said to be empty; usage errors exit 2.
func TestCheckPasses(t *testing.T) {
	dir := t.TempDir()
	idFile, acmeDir := checkVault(t, dir)
	out := checkJSON(t, dir, 0, "--read-data")
	acme, solo := tenantOut(t, out, "acme"), tenantOut(t, out, "solo")
	packs := len(packFiles(t, acmeDir))
	if !out.OK || out.Errors != 0 || acme.Keyless.Packs != packs || acme.Keyless.PacksRead != packs || acme.Full != nil ||
		len(acme.Keyless.Problems) != 0 || !solo.Keyless.Empty {
		t.Fatalf("intact vault: %+v", out)
	}
	full := checkJSON(t, dir, 0, "--tenant", "acme", "--escrow-key", idFile, "--read-data=50%", "--read-data-seed", "s1")
	acme = tenantOut(t, full, "acme")
	if len(full.Tenants) != 1 || acme.Full == nil || acme.Full.Snapshots != 2 || acme.Full.Errors() != 0 || acme.Keyless.PacksRead != 0 ||
		acme.Full.Blobs == 0 || full.SampleSeed != "s1" || full.ReadDataPercent != 50 {
		t.Fatalf("full check: %+v", full)
	}
	all := tenantOut(t, checkJSON(t, dir, 0, "--tenant", "acme", "--escrow-key", idFile, "--read-data"), "acme").Full
	if all.ReadBytes <= acme.Full.ReadBytes || acme.Full.ReadBytes == 0 {
		t.Fatalf("a 50%% sample read %d bytes, all packs %d", acme.Full.ReadBytes, all.ReadBytes)
	}
	r := cofferd(t, dir, "check", "--escrow-key", idFile)
	if r.code != 0 || !strings.Contains(r.stdout, "full check not run: the tenant did not choose escrow") ||
		!strings.Contains(r.stdout, "2 tenant(s) checked, 0 error(s)") {
		t.Fatalf("text: %+v", r)
	}
	for _, args := range [][]string{{"--read-data=0"}, {"--read-data=150%"}, {"--read-data-seed", "x"}, {"--max-object-size", "1KiB"}, {"extra"}} {
		if r := cofferd(t, dir, append([]string{"check"}, args...)...); r.code != 2 {
			t.Errorf("check %v: %+v; want exit 2", args, r)
		}
	}
	if r := cofferd(t, dir, "check", "--tenant", "nobody"); r.code == 0 || !strings.Contains(r.stderr, "nobody") {
		t.Errorf("an unknown tenant: %+v", r)
	}
}

// A pack with one byte flipped is found by reading it, keyless or with the
// escrow identity; a deleted pack is found with the escrow identity (the
// index names it) and, once receipts land, keyless; a foreign object is
// a warning.
func TestCheckFindsDamage(t *testing.T) {
	dir := t.TempDir()
	idFile, acmeDir := checkVault(t, dir)
	packs := packFiles(t, acmeDir)
	b, err := os.ReadFile(packs[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x01
	if err := os.WriteFile(packs[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	damaged := objectName(t, acmeDir, packs[0])
	if err := os.WriteFile(filepath.Join(acmeDir, "README.txt"), []byte("hi"), 0o600); err != nil {
		t.Fatal(err)
	}

	names := checkJSON(t, dir, 0, "--tenant", "acme")
	if p := tenantOut(t, names, "acme").Keyless.Problems; len(p) != 1 || p[0].Kind != jobs.ProblemForeign || p[0].Object != "README.txt" {
		t.Fatalf("names only: %+v", p)
	}
	out := checkJSON(t, dir, 1, "--read-data")
	acme := tenantOut(t, out, "acme")
	if out.OK || out.Errors != 1 || len(acme.Keyless.Problems) != 2 || acme.Keyless.Problems[1].Object != damaged ||
		acme.Keyless.Problems[1].Kind != jobs.ProblemDamaged {
		t.Fatalf("keyless read-data: %+v", acme.Keyless.Problems)
	}
	r := cofferd(t, dir, "check", "--read-data")
	if r.code != 1 || !strings.Contains(r.stdout, "damaged: "+damaged+" does not match its name") ||
		!strings.Contains(r.stdout, "foreign: README.txt") || !strings.Contains(r.stderr, "1 damaged, missing or unreadable") {
		t.Fatalf("text: %+v", r)
	}
	full := tenantOut(t, checkJSON(t, dir, 1, "--escrow-key", idFile, "--read-data"), "acme").Full
	if full == nil || !hasProblem(full.Problems, damaged, "content does not match its name") {
		t.Fatalf("full: %+v", full)
	}

	if err := os.Remove(packs[1]); err != nil {
		t.Fatal(err)
	}
	deleted := objectName(t, acmeDir, packs[1])
	full = tenantOut(t, checkJSON(t, dir, 1, "--escrow-key", idFile), "acme").Full
	if full == nil || !hasProblem(full.Problems, deleted, "missing from the store") {
		t.Fatalf("a deleted pack: %+v", full)
	}
}

func hasProblem(ps []check.Problem, object, msg string) bool {
	for _, p := range ps {
		if p.Object == object && strings.Contains(p.Message, msg) && !p.Warning {
			return true
		}
	}
	return false
}

// A wrong escrow identity stops the check with exit 12.
func TestCheckWrongEscrowIdentity(t *testing.T) {
	dir := t.TempDir()
	checkVault(t, dir)
	other, err := crypto.GenerateEscrowKey(true)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	if err := os.WriteFile(wrong, []byte(other.Identity()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := cofferd(t, dir, "check", "--escrow-key", wrong); r.code != 12 {
		t.Fatalf("a wrong escrow identity: %+v; want exit 12", r)
	}
	if r := cofferd(t, dir, "check", "--escrow-key", filepath.Join(t.TempDir(), "none")); r.code != 2 {
		t.Fatalf("a missing identity file: %+v; want exit 2", r)
	}
}
