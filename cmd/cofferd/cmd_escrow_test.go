package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault"
	"github.com/cofferhq/coffer/vault/registry"
)

var fpRE = regexp.MustCompile(`fingerprint: ([0-9a-f]{16})`)

// putSlot stores a slot content-named in st and returns its name.
func putSlot(t *testing.T, st store.Store, s *crypto.Slot) string {
	t.Helper()
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	name := "keys/" + hex.EncodeToString(sum[:])
	if err := st.Put(context.Background(), name, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestEscrowEndToEnd(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	ctx := context.Background()
	dir := t.TempDir()
	idFile := filepath.Join(t.TempDir(), "escrow.key")

	if r := cofferd(t, dir, "escrow", "show"); r.code != 1 || !strings.Contains(r.stderr, "escrow init") {
		t.Fatalf("show without a key: %+v", r)
	}
	if r := cofferd(t, dir, "escrow", "init"); r.code != 2 {
		t.Fatalf("init without --out: %+v", r)
	}
	r := cofferd(t, dir, "escrow", "init", "--out", idFile)
	m := fpRE.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil || !strings.Contains(r.stdout, "age1pq1") {
		t.Fatalf("init: %+v", r)
	}
	fp := m[1]
	fi, err := os.Stat(idFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v %v", fi, err)
	}
	idText, _ := os.ReadFile(idFile)
	secret := regexp.MustCompile(`AGE-SECRET-KEY-PQ-1[0-9A-Z]+`).Find(idText)
	if secret == nil {
		t.Fatalf("identity file lacks the identity")
	}
	// The secret is nowhere in the store, nor in the output.
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, secret) || bytes.Contains(bytes.ToLower(b), bytes.ToLower(secret)) {
				t.Errorf("%s holds the escrow identity", p)
			}
		}
		return nil
	})
	if strings.Contains(r.stdout+r.stderr, string(secret)) {
		t.Fatal("init printed the identity")
	}
	// Create-only: a second init fails and leaves the key and the file alone.
	idFile2 := filepath.Join(t.TempDir(), "escrow2.key")
	if r := cofferd(t, dir, "escrow", "init", "--out", idFile2); r.code != 1 || !strings.Contains(r.stderr, fp) {
		t.Fatalf("second init: %+v", r)
	}
	if _, err := os.Stat(idFile2); !os.IsNotExist(err) {
		t.Fatal("a failed init left an identity file")
	}
	if r := cofferd(t, t.TempDir(), "escrow", "init", "--out", idFile); r.code != 2 || !strings.Contains(r.stderr, "exists") {
		t.Fatalf("init over an existing file: %+v", r)
	}
	if b, _ := os.ReadFile(idFile); !bytes.Equal(b, idText) {
		t.Fatal("identity file changed")
	}
	r = cofferd(t, dir, "--json", "escrow", "show")
	var shown escrowOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &shown) != nil || shown.Fingerprint != fp || crypto.EscrowFingerprint(shown.Recipient) != fp {
		t.Fatalf("show: %+v", r)
	}

	// A tenant with a repository stored where the vault keeps it.
	tok := tokenRE.FindString(cofferd(t, dir, "tenant", "create", "acme").stdout)
	g := &globals{storeURL: "file://" + dir, clock: clock.Real}
	data, reg, led, err := g.openState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	ten, err := reg.Resolve(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	var cfg vault.Config
	cfg.Data = data
	(&vault.State{Registry: reg, Ledger: led}).Configure(&cfg)
	_, id, sum, _ := vaultapi.NewCredential()
	resp, err := cfg.Enroller.Enroll(ctx, vaultapi.EnrollRequest{Token: vaultapi.Secret(tok), CredentialID: id,
		CredentialSHA256: hex.EncodeToString(sum[:]), Escrow: true})
	if err != nil || !resp.EscrowAvailable {
		t.Fatalf("enroll: %+v %v", resp, err)
	}
	if r := cofferd(t, dir, "tenant", "show", "acme"); !strings.Contains(r.stdout, "escrow:    chosen, slot pending") {
		t.Fatalf("show pending: %+v", r)
	}
	tenantStore, err := store.OpenLocal(filepath.Join(dir, "repos", ten.ID), true)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := repo.Init(ctx, tenantStore, []byte("pw"), repo.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	mk := rp.Keys().Master()

	// The server refuses what is not this vault's escrow slot for the repo.
	other, _ := crypto.GenerateEscrowKey(true)
	otherSlot, _ := crypto.NewEscrowSlot(mk, other.Recipient, time.Now(), "h")
	passSlot, _ := crypto.NewPassphraseSlot(mk, []byte("x"), crypto.DefaultKDF(), time.Now(), "h")
	for _, c := range []struct{ slot, want string }{
		{"keys/" + strings.Repeat("0", 64), "not in your repository"},
		{putSlot(t, tenantStore, passSlot), "not an escrow-age slot"},
		{putSlot(t, tenantStore, otherSlot), "not to this vault's escrow key " + fp},
	} {
		if err := cfg.Escrow.RecordEscrowSlot(ctx, ten.ID, c.slot); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("record %s: %v, want %q", c.slot, err, c.want)
		}
	}
	// The agent's slot, sealed to the published recipient.
	rcpt, gotFP, err := cfg.Escrow.EscrowRecipient(ctx)
	if err != nil || gotFP != fp {
		t.Fatal(gotFP, err)
	}
	good, err := crypto.NewEscrowSlot(mk, rcpt, time.Now(), "xen1")
	if err != nil {
		t.Fatal(err)
	}
	goodName := putSlot(t, tenantStore, good)
	if err := cfg.Escrow.RecordEscrowSlot(ctx, ten.ID, goodName); err != nil {
		t.Fatal(err)
	}
	r = cofferd(t, dir, "--json", "tenant", "show", "acme")
	var info vaultapi.TenantInfo
	if json.Unmarshal([]byte(r.stdout), &info) != nil || info.Escrow.Status != vaultapi.EscrowYes || info.Escrow.Slot != goodName || info.Escrow.Fingerprint != fp {
		t.Fatalf("tenant show --json: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "list"); !strings.Contains(r.stdout, "ESCROW") || !strings.Contains(r.stdout, " yes") {
		t.Fatalf("tenant list: %+v", r)
	}

	// Offline verification.
	r = cofferd(t, dir, "escrow", "verify", "--tenant", "acme", "--identity", idFile)
	if r.code != 0 || !strings.Contains(r.stdout, "ok:") {
		t.Fatalf("verify: %+v", r)
	}
	otherID := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(otherID, []byte(other.Identity()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := cofferd(t, dir, "escrow", "verify", "--tenant", "acme", "--identity", otherID); r.code != 12 ||
		!strings.Contains(r.stderr, "does not open") || strings.Contains(r.stderr, other.Identity()) {
		t.Fatalf("verify with another identity: %+v", r)
	}
	// A slot sealed to the right key but holding another master key: the
	// server cannot tell, verify can.
	wrongMK, _ := crypto.NewMasterKey()
	bad, _ := crypto.NewEscrowSlot(wrongMK, rcpt, time.Now(), "h")
	badName := putSlot(t, tenantStore, bad)
	if r := cofferd(t, dir, "escrow", "verify", "--tenant", "acme", "--identity", idFile, "--slot", badName); r.code != 1 ||
		!strings.Contains(r.stderr, "NOT authenticate") {
		t.Fatalf("verify a slot of another key: %+v", r)
	}
	if r := cofferd(t, dir, "escrow", "verify", "--tenant", "acme", "--identity", filepath.Join(dir, "nope")); r.code != 2 {
		t.Fatalf("verify with a missing identity file: %+v", r)
	}
	if r := cofferd(t, dir, "escrow", "verify", "--tenant", "acme", "--identity", idFile, "--slot", "../x"); r.code != 2 {
		t.Fatalf("verify with a bad slot name: %+v", r)
	}
	_ = registry.EscrowName
}
