package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/testutil/judge"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
	"github.com/cofferhq/coffer/vault"
)

// escrowTenant makes a vault in dir with an escrow key (its identity file
// returned), a tenant that chose escrow (escrow true) or not, and in the
// tenant's repository a backup of image under name.
func escrowTenant(t *testing.T, dir, tenant string, escrow bool, image string) string {
	t.Helper()
	return escrowTenantWith(t, dir, tenant, escrow, func(r *repo.Repo) { backupImage(t, r, image) })
}

// backupImage backs image up into r as snapshot "web01".
func backupImage(t *testing.T, r *repo.Repo, image string) {
	t.Helper()
	src, err := source.OpenImage(image)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	b, err := uploader.New(r, src, uploader.Options{Name: "web01"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// escrowTenantWith is escrowTenant with fill backing up into the tenant's
// repository.
func escrowTenantWith(t *testing.T, dir, tenant string, escrow bool, fill func(*repo.Repo)) string {
	t.Helper()
	ctx := context.Background()
	idFile := filepath.Join(t.TempDir(), "escrow.key")
	if r := cofferd(t, dir, "escrow", "show"); r.code != 0 {
		if r := cofferd(t, dir, "escrow", "init", "--out", idFile); r.code != 0 {
			t.Fatalf("escrow init: %+v", r)
		}
	}
	tok := tokenRE.FindString(cofferd(t, dir, "tenant", "create", tenant).stdout)
	g := &globals{storeURL: "file://" + dir, clock: clock.Real}
	data, reg, led, err := g.openState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	ten, err := reg.Resolve(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	var cfg vault.Config
	cfg.Data = data
	(&vault.State{Registry: reg, Ledger: led}).Configure(&cfg)
	_, id, sum, _ := vaultapi.NewCredential()
	if _, err := cfg.Enroller.Enroll(ctx, vaultapi.EnrollRequest{Token: vaultapi.Secret(tok), CredentialID: id,
		CredentialSHA256: hex.EncodeToString(sum[:]), Escrow: escrow}); err != nil {
		t.Fatal(err)
	}
	ts, err := store.OpenLocal(filepath.Join(dir, "repos", ten.ID), true)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(ctx, ts, []byte("tenant passphrase"), repo.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	fill(r)
	if escrow {
		rcpt, _, err := cfg.Escrow.EscrowRecipient(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slot, err := r.AddEscrowSlot(ctx, rcpt)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Escrow.RecordEscrowSlot(ctx, ten.ID, slot); err != nil {
			t.Fatal(err)
		}
	}
	return idFile
}

// The provider restores a tenant's disk with the escrow identity, read-only;
// a wrong identity exits 12, a tenant without escrow gets a clear error.
func TestRestoreWithEscrow(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	dir := t.TempDir()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := diskgen.Generate(img, 24<<20+4321, 3, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	idFile := escrowTenant(t, dir, "acme", true, img)
	before := storeListing(t, dir)
	out := filepath.Join(t.TempDir(), "web01.img")
	r := cofferd(t, dir, "--json", "restore", "--tenant", "acme", "latest", "--name", "web01", "--to", out, "--escrow-key", idFile)
	var sum restoreOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &sum) != nil || !sum.Verified || sum.Tenant != "acme" || sum.Name != "web01" {
		t.Fatalf("restore: %+v", r)
	}
	want, _ := os.ReadFile(img)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, want) {
		t.Fatal("the restored disk differs from the image backed up")
	}
	if after := storeListing(t, dir); after != before {
		t.Fatalf("the restore changed the vault's store:\n%s\nthen\n%s", before, after)
	}

	other, err := crypto.GenerateEscrowKey(true)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	if err := os.WriteFile(wrong, []byte(other.Identity()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := cofferd(t, dir, "restore", "--tenant", "acme", "latest", "--to", out+".2", "--escrow-key", wrong); r.code != 12 {
		t.Fatalf("a wrong escrow identity: %+v; want exit 12", r)
	}
	if r := cofferd(t, dir, "restore", "--tenant", "acme", "latest", "--to", out+".3"); r.code != 2 || !strings.Contains(r.stderr, "--escrow-key") {
		t.Fatalf("no --escrow-key: %+v", r)
	}
	escrowTenant(t, dir, "solo", false, img)
	if r := cofferd(t, dir, "restore", "--tenant", "solo", "latest", "--to", out+".4", "--escrow-key", idFile); r.code != 1 ||
		!strings.Contains(r.stderr, "did not choose escrow") {
		t.Fatalf("a tenant without escrow: %+v", r)
	}
	for _, p := range []string{".2", ".3", ".4"} {
		if _, err := os.Stat(out + p); !os.IsNotExist(err) {
			t.Errorf("a failed restore left %s", out+p)
		}
	}
}

// storeListing lists the files under dir with their sizes.
func storeListing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			b.WriteString(p + " " + fi.ModTime().String() + "\n")
		}
		return nil
	})
	return b.String()
}

// cofferd nbd serves a tenant's snapshot at once; qemu-img reads it equal
// to the disk backed up, and an interrupt stops it cleanly.
func TestNBDInstantAccess(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	qemu := judge.Need(t, "qemu-img")
	dir := t.TempDir()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := diskgen.Generate(img, 20<<20, 5, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	idFile := escrowTenant(t, dir, "acme", true, img)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--store", "file://" + dir, "--json", "nbd", "--tenant", "acme", "latest",
			"--listen", "127.0.0.1:0", "--escrow-key", idFile}, pw, &errb)
		pw.Close()
	}()
	var out nbdOut
	if err := json.NewDecoder(pr).Decode(&out); err != nil {
		t.Fatalf("no serving line: %v (stderr %s)", err, errb.String())
	}
	go io.Copy(io.Discard, pr)
	if out.Type != "serving" || len(out.URIs) != 1 || !strings.HasSuffix(out.URIs[0], "/disk0") {
		t.Fatalf("serving line %+v", out)
	}
	if got := judge.Run(t, qemu, "compare", "-f", "raw", "-F", "raw", img, out.URIs[0]); !strings.Contains(got, "identical") {
		t.Fatalf("qemu-img compare: %s", got)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("cofferd nbd exited %d after the interrupt: %s", code, errb.String())
	}
}
