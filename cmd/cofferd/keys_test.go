package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
)

// keysFixture is a vault with tenant acme whose repository holds: the
// passphrase slot coffer init made, a second passphrase slot uploaded
// through the API by an enrolled agent (its host hostile), the recorded
// escrow slot, and an object under keys/ that is no slot.
type keysFixture struct {
	dir                          string
	tenantDir                    string
	first, second, escrow, trash string // slot ids
	credID                       string
	identity                     string // the escrow identity file
}

func newKeysFixture(t *testing.T) *keysFixture {
	t.Helper()
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	ctx := context.Background()
	f := &keysFixture{dir: t.TempDir()}
	idFile := filepath.Join(t.TempDir(), "escrow.key")
	f.identity = idFile
	if r := cofferd(t, f.dir, "escrow", "init", "--out", idFile); r.code != 0 {
		t.Fatalf("escrow init: %+v", r)
	}
	tok := tokenRE.FindString(cofferd(t, f.dir, "tenant", "create", "acme").stdout)
	g := &globals{storeURL: "file://" + f.dir, clock: clock.Real}
	data, reg, led, err := g.openState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { data.Close() })
	ten, _ := reg.Resolve(ctx, "acme")
	cfg := vault.Config{Data: data}
	(&vault.State{Registry: reg, Ledger: led}).Configure(&cfg)
	srv, err := vault.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	cred, id, sum, _ := vaultapi.NewCredential()
	f.credID = id
	if _, err := cfg.Enroller.Enroll(ctx, vaultapi.EnrollRequest{Token: vaultapi.Secret(tok), CredentialID: id,
		CredentialSHA256: hex.EncodeToString(sum[:]), Escrow: true}); err != nil {
		t.Fatal(err)
	}
	f.tenantDir = filepath.Join(f.dir, "repos", ten.ID)
	tenantStore, _ := store.OpenLocal(f.tenantDir, true)
	rp, err := repo.Init(ctx, tenantStore, []byte("pw"), repo.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(f.tenantDir, "keys"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("coffer init made %d slots: %v", len(ents), err)
	}
	f.first = ents[0].Name()
	mk := rp.Keys().Master()

	second, _ := crypto.NewPassphraseSlot(mk, []byte("new"), crypto.DefaultKDF(), time.Now().Add(time.Hour), "evil\x1b]0;owned\a\u202ehost")
	b, _ := second.Marshal()
	h := sha256.Sum256(b)
	f.second = hex.EncodeToString(h[:])
	req, _ := http.NewRequest("PUT", ts.URL+"/v1/repo/keys/"+f.second, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+cred.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("put slot: %v %v", resp, err)
	}
	resp.Body.Close()

	rcpt, _, _ := cfg.Escrow.EscrowRecipient(ctx)
	esc, _ := crypto.NewEscrowSlot(mk, rcpt, time.Now().Add(2*time.Hour), "xen1")
	escName := putSlot(t, tenantStore, esc)
	if err := cfg.Escrow.RecordEscrowSlot(ctx, ten.ID, escName); err != nil {
		t.Fatal(err)
	}
	f.escrow = strings.TrimPrefix(escName, "keys/")
	trash := []byte("not a slot")
	h = sha256.Sum256(trash)
	f.trash = hex.EncodeToString(h[:])
	if err := tenantStore.Put(ctx, "keys/"+f.trash, bytes.NewReader(trash), int64(len(trash))); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *keysFixture) exists(id string) bool {
	_, err := os.Stat(filepath.Join(f.tenantDir, "keys", id))
	return err == nil
}

func TestTenantKeys(t *testing.T) {
	f := newKeysFixture(t)
	r := cofferd(t, f.dir, "tenant", "keys", "acme")
	if r.code != 0 {
		t.Fatalf("keys: %+v", r)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if id, _, ok := strings.Cut(l, " "); ok {
			lines[id] = l
		}
	}
	if l := lines[f.second]; !strings.Contains(l, "passphrase") || !strings.Contains(l, f.credID) || !strings.Contains(l, `evil\x1b]0;owned\x07\u202ehost`) {
		t.Errorf("uploaded slot: %q", l)
	}
	if l := lines[f.first]; !strings.Contains(l, "passphrase") || strings.Contains(l, f.credID) {
		t.Errorf("first slot: %q", l)
	}
	if l := lines[f.escrow]; !strings.Contains(l, "escrow-age (recorded escrow)") || !strings.Contains(l, "xen1") {
		t.Errorf("escrow slot: %q", l)
	}
	if l := lines[f.trash]; !strings.Contains(l, "unreadable") || !strings.Contains(l, "not valid JSON") {
		t.Errorf("unreadable slot: %q", l)
	}
	if strings.ContainsAny(r.stdout, "\x1b\a\u202e") {
		t.Errorf("unsanitised host in %q", r.stdout)
	}

	r = cofferd(t, f.dir, "--json", "tenant", "keys", "acme")
	var out keysOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Tenant != "acme" || len(out.Slots) != 4 {
		t.Fatalf("keys --json: %+v", r)
	}
	for _, s := range out.Slots {
		if s.Name != "keys/"+s.ID || (s.ID == f.second) != (s.Credential == f.credID) || (s.ID == f.escrow) != s.Escrow {
			t.Errorf("slot %+v", s)
		}
	}
}

func TestTenantRemoveKey(t *testing.T) {
	f := newKeysFixture(t)
	// Another tenant's slot is not acme's to remove.
	cofferd(t, f.dir, "tenant", "create", "beta")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{f.second[:7]}, 2, "at least 8 hex digits"},
		{[]string{"zzzzzzzzzz"}, 2, "at least 8 hex digits"},
		{[]string{"00000000"}, 1, "tenant acme has no key slot 00000000"},
		{[]string{f.escrow[:8]}, 1, "recorded escrow slot"},
	} {
		r := cofferd(t, f.dir, append([]string{"tenant", "remove-key", "acme"}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("remove-key %v: %+v, want exit %d and %q", c.args, r, c.code, c.want)
		}
	}
	if r := cofferd(t, f.dir, "tenant", "remove-key", "beta", f.first); r.code != 1 || !f.exists(f.first) {
		t.Fatalf("remove-key through another tenant: %+v", r)
	}
	if !f.exists(f.escrow) || !f.exists(f.second) {
		t.Fatal("a refused remove-key removed a slot")
	}
	// The old passphrase slot after coffer key passwd: removed.
	r := cofferd(t, f.dir, "tenant", "remove-key", "acme", "keys/"+f.first)
	if r.code != 0 || !strings.Contains(r.stdout, "removed key slot "+f.first+" from tenant acme: passphrase") || f.exists(f.first) {
		t.Fatalf("remove the old slot: %+v", r)
	}
	// Now the last passphrase slot: refused without --force.
	r = cofferd(t, f.dir, "tenant", "remove-key", "acme", f.second[:12])
	if r.code != 1 || !strings.Contains(r.stderr, "last passphrase slot") || !strings.Contains(r.stderr, "--force") || !f.exists(f.second) {
		t.Fatalf("remove the last passphrase slot: %+v", r)
	}
	r = cofferd(t, f.dir, "--json", "tenant", "remove-key", "acme", f.escrow, "--force")
	var out removedOut
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Removed.ID != f.escrow || !out.Forced || f.exists(f.escrow) {
		t.Fatalf("forced escrow removal: %+v", r)
	}
	if r := cofferd(t, f.dir, "tenant", "show", "acme"); !strings.Contains(r.stdout, "escrow:    chosen, slot pending") {
		t.Fatalf("escrow record after removal: %+v", r)
	}
	if r := cofferd(t, f.dir, "tenant", "remove-key", "acme", f.trash); r.code != 0 || f.exists(f.trash) {
		t.Fatalf("remove an unreadable slot: %+v", r)
	}
	r = cofferd(t, f.dir, "tenant", "keys", "acme")
	if n := len(regexp.MustCompile(`(?m)^[0-9a-f]{64} `).FindAllString(r.stdout, -1)); n != 1 || !strings.Contains(r.stdout, f.second) {
		t.Fatalf("keys after removals (%d): %s", n, r.stdout)
	}
}
