package registry_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/registry"
)

type fakeClock = clocktest.Clock

// twoRegistries opens two Local stores on one directory (two "replicas")
// and a registry on each.
func twoRegistries(t *testing.T) (*registry.Registry, *registry.Registry, *fakeClock, store.Store) {
	t.Helper()
	dir := t.TempDir()
	clock := clocktest.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	var regs [2]*registry.Registry
	var first store.Store
	for i := range regs {
		s, err := store.OpenLocal(dir, true)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = s
		}
		if regs[i], err = registry.New(s, clock); err != nil {
			t.Fatal(err)
		}
	}
	return regs[0], regs[1], clock, first
}

func code(err error) string {
	var e *vaultapi.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return fmt.Sprintf("uncoded(%v)", err)
}

func TestUpdateConcurrentExact(t *testing.T) {
	a, b, _, _ := twoRegistries(t)
	type counter struct {
		registry.Revision
		N int `json:"n"`
	}
	var wg sync.WaitGroup
	for g := range 8 {
		sw := a.Swapper()
		if g%2 == 1 {
			sw = b.Swapper()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				_, err := registry.Update(context.Background(), sw, "vault/test/counter", 1024, func(cur *counter, ok bool) (*counter, error) {
					next := counter{}
					if ok {
						next = *cur
					}
					next.N++
					return &next, nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, err := registry.Update(context.Background(), a.Swapper(), "vault/test/counter", 1024, func(cur *counter, ok bool) (*counter, error) { return cur, nil })
	if err != nil || got.N != 200 || got.Rev != 200 {
		t.Fatalf("counter = %+v, %v; want n=200 rev=200", got, err)
	}
}

func TestUpdateErrorAndNoop(t *testing.T) {
	a, _, _, s := twoRegistries(t)
	type doc struct {
		registry.Revision
		V string `json:"v"`
	}
	ctx := context.Background()
	boom := errors.New("boom")
	if _, err := registry.Update(ctx, a.Swapper(), "vault/x", 100, func(*doc, bool) (*doc, error) { return nil, boom }); err != boom {
		t.Fatalf("err = %v", err)
	}
	if _, err := s.Stat(ctx, "vault/x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatal("a failed update wrote")
	}
	if _, err := registry.Update(ctx, a.Swapper(), "vault/x", 100, func(*doc, bool) (*doc, error) { return &doc{V: "1"}, nil }); err != nil {
		t.Fatal(err)
	}
	d, err := registry.Update(ctx, a.Swapper(), "vault/x", 100, func(c *doc, _ bool) (*doc, error) { return c, nil })
	if err != nil || d.Rev != 1 || d.V != "1" {
		t.Fatalf("%+v %v", d, err)
	}
	if _, err := registry.Update(ctx, a.Swapper(), "vault/x", 20, func(c *doc, _ bool) (*doc, error) {
		return &doc{V: strings.Repeat("x", 50)}, nil
	}); err == nil {
		t.Fatal("an oversized document was written")
	}
}

func TestTenantLifecycle(t *testing.T) {
	a, b, _, _ := twoRegistries(t)
	ctx := context.Background()
	ten, tok, exp, err := a.CreateTenant(ctx, "acme", 1<<30, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !vaultapi.ValidTenantID(ten.ID) || !strings.HasPrefix(tok.Reveal(), "cft1_") || exp.Sub(ten.Created) != 7*24*time.Hour {
		t.Fatalf("%+v %v", ten, exp)
	}
	if _, _, _, err := b.CreateTenant(ctx, "acme", 0, 0); code(err) != vaultapi.CodeExists {
		t.Fatalf("duplicate name: %v", err)
	}
	for _, bad := range []string{"Acme", "-x", "", "a/b", "../x"} {
		if _, _, _, err := a.CreateTenant(ctx, bad, 0, 0); code(err) != vaultapi.CodeBadRequest {
			t.Errorf("name %q: %v", bad, err)
		}
	}
	for _, key := range []string{"acme", ten.ID} {
		got, err := b.Resolve(ctx, key)
		if err != nil || got.ID != ten.ID {
			t.Fatalf("Resolve(%q) = %+v, %v", key, got, err)
		}
	}
	if _, err := a.Resolve(ctx, "nobody"); code(err) != vaultapi.CodeNotFound {
		t.Fatal(err)
	}
	if _, err := a.Resolve(ctx, "../etc"); code(err) != vaultapi.CodeBadRequest {
		t.Fatal(err)
	}
	if _, _, _, err := a.CreateTenant(ctx, "beta", 0, 0); err != nil {
		t.Fatal(err)
	}
	list, err := b.List(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "acme" || list[1].Name != "beta" {
		t.Fatalf("List = %v, %v", list, err)
	}
	got, err := a.SetQuota(ctx, ten.ID, 5<<20)
	if err != nil || got.Quota != 5<<20 || got.Rev != 2 {
		t.Fatalf("%+v %v", got, err)
	}
	got, err = a.SetQuota(ctx, ten.ID, 5<<20) // no change, no write
	if err != nil || got.Rev != 2 {
		t.Fatalf("%+v %v", got, err)
	}
	got, err = b.SetRTO(ctx, ten.ID, 4*time.Hour)
	if err != nil || got.RTO != 4*time.Hour || got.Rev != 3 {
		t.Fatalf("SetRTO: %+v %v", got, err)
	}
	if got, err = a.Tenant(ctx, ten.ID); err != nil || got.RTO != 4*time.Hour {
		t.Fatalf("the RTO read back: %+v %v", got, err)
	}
	if got, err = a.SetRTO(ctx, ten.ID, 4*time.Hour); err != nil || got.Rev != 3 { // no change, no write
		t.Fatalf("%+v %v", got, err)
	}
	if _, err = a.SetRTO(ctx, ten.ID, -time.Second); code(err) != vaultapi.CodeBadRequest {
		t.Fatalf("a negative RTO: %v", err)
	}
	got, err = b.Suspend(ctx, ten.ID, "unpaid invoice")
	if err != nil || !got.Suspended() || got.SuspendedAt.IsZero() {
		t.Fatalf("%+v %v", got, err)
	}
	got, err = a.Resume(ctx, ten.ID)
	if err != nil || got.Suspended() || got.Reason != "" {
		t.Fatalf("%+v %v", got, err)
	}
}

func TestCreateTenantRace(t *testing.T) {
	a, b, _, _ := twoRegistries(t)
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		r := a
		if i%2 == 1 {
			r = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _, err := r.CreateTenant(context.Background(), "same", 0, 0)
			switch {
			case err == nil:
				wins.Add(1)
			case code(err) != vaultapi.CodeExists:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	list, err := a.List(context.Background())
	if wins.Load() != 1 || err != nil || len(list) != 1 {
		t.Fatalf("wins %d, list %v %v", wins.Load(), list, err)
	}
}

func newCred(t *testing.T) (vaultapi.Secret, string, string) {
	cred, id, sha, err := vaultapi.NewCredential()
	if err != nil {
		t.Fatal(err)
	}
	return cred, id, hex.EncodeToString(sha[:])
}

func TestEnrollAndAuthenticate(t *testing.T) {
	a, b, clock, _ := twoRegistries(t)
	ctx := context.Background()
	ten, tok, _, err := a.CreateTenant(ctx, "acme", 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cred, id, sha := newCred(t)
	req := vaultapi.EnrollRequest{Token: tok, CredentialID: id, CredentialSHA256: sha, Host: "xen1"}
	gt, gc, err := b.Enroll(ctx, req)
	if err != nil || gt.ID != ten.ID || gc.ID != id || gc.Host != "xen1" {
		t.Fatalf("Enroll: %v %v %v", gt, gc, err)
	}
	// A lost reply is retried: same token, same credential, success.
	if _, _, err := a.Enroll(ctx, req); err != nil {
		t.Fatalf("retry: %v", err)
	}
	// Another credential with the used token.
	_, id2, sha2 := newCred(t)
	if _, _, err := a.Enroll(ctx, vaultapi.EnrollRequest{Token: tok, CredentialID: id2, CredentialSHA256: sha2}); code(err) != vaultapi.CodeTokenUsed {
		t.Fatalf("token reuse: %v", err)
	}
	creds, err := a.Credentials(ctx, ten.ID)
	if err != nil || len(creds) != 1 {
		t.Fatalf("credentials %v %v", creds, err)
	}

	at, ac, err := a.Authenticate(ctx, cred.Reveal())
	if err != nil || at.ID != ten.ID || ac.ID != id {
		t.Fatalf("Authenticate: %v", err)
	}
	// Unknown id and wrong secret: the same answer.
	wrong := cred.Reveal()[:len(cred.Reveal())-2] + "AA"
	if wrong == cred.Reveal() {
		wrong = cred.Reveal()[:len(cred.Reveal())-2] + "BA"
	}
	other, _, _ := newCred(t)
	var msgs []string
	for _, bad := range []string{wrong, other.Reveal(), "cfa1_x", "", "Bearer " + cred.Reveal()} {
		_, _, err := a.Authenticate(ctx, bad)
		if code(err) != vaultapi.CodeInvalidCredential {
			t.Fatalf("Authenticate(bad) = %v", err)
		}
		msgs = append(msgs, err.Error())
	}
	for _, m := range msgs {
		if m != msgs[0] {
			t.Fatalf("messages differ: %q", msgs)
		}
	}

	if _, err := b.Suspend(ctx, ten.ID, "unpaid"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Authenticate(ctx, cred.Reveal()); code(err) != vaultapi.CodeTenantSuspended || !strings.Contains(err.Error(), "acme is suspended") || !strings.Contains(err.Error(), "unpaid") {
		t.Fatalf("suspended: %v", err)
	}
	if _, err := b.Resume(ctx, ten.ID); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, ten.ID, id); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, ten.ID, id); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	if err := a.Revoke(ctx, "000000000000000000000000", id); code(err) != vaultapi.CodeNotFound {
		t.Fatalf("revoke by another tenant: %v", err)
	}
	if _, _, err := b.Authenticate(ctx, cred.Reveal()); code(err) != vaultapi.CodeCredentialRevoked {
		t.Fatalf("revoked: %v", err)
	}

	// Expiry.
	tok2, exp, err := a.NewToken(ctx, ten.ID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	_, id3, sha3 := newCred(t)
	_, _, err = a.Enroll(ctx, vaultapi.EnrollRequest{Token: tok2, CredentialID: id3, CredentialSHA256: sha3})
	if code(err) != vaultapi.CodeTokenExpired || !strings.Contains(err.Error(), exp.Format(time.RFC3339)) || !strings.Contains(err.Error(), "cofferd tenant token acme") {
		t.Fatalf("expired: %v", err)
	}
	// Wrong token secret, unknown token, malformed request.
	bad := tok2.Reveal()[:len(tok2.Reveal())-2] + "AA"
	for _, r := range []vaultapi.EnrollRequest{
		{Token: vaultapi.Secret(bad), CredentialID: id3, CredentialSHA256: sha3},
		{Token: "cft1_000000000000000000000000_" + vaultapi.Secret(strings.Repeat("A", 43)), CredentialID: id3, CredentialSHA256: sha3},
	} {
		if _, _, err := a.Enroll(ctx, r); code(err) != vaultapi.CodeInvalidCredential || strings.Contains(err.Error(), "cft1_") {
			t.Fatalf("bad token: %v", err)
		}
	}
	if _, _, err := a.Enroll(ctx, vaultapi.EnrollRequest{Token: tok2, CredentialID: "x", CredentialSHA256: sha3}); code(err) != vaultapi.CodeBadRequest {
		t.Fatal(err)
	}
}

func TestEnrollRaceOneToken(t *testing.T) {
	a, b, _, _ := twoRegistries(t)
	ctx := context.Background()
	ten, tok, _, err := a.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wins, used atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		r := a
		if i%2 == 1 {
			r = b
		}
		_, id, sha := newCred(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := r.Enroll(ctx, vaultapi.EnrollRequest{Token: tok, CredentialID: id, CredentialSHA256: sha})
			switch code(err) {
			case vaultapi.CodeTokenUsed:
				used.Add(1)
			default:
				if err == nil {
					wins.Add(1)
				} else {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	creds, err := a.Credentials(ctx, ten.ID)
	if wins.Load() != 1 || used.Load() != 7 || err != nil || len(creds) != 1 {
		t.Fatalf("wins %d used %d creds %d %v", wins.Load(), used.Load(), len(creds), err)
	}
}

func TestCredentialIDTaken(t *testing.T) {
	a, _, _, _ := twoRegistries(t)
	ctx := context.Background()
	_, tok1, _, _ := a.CreateTenant(ctx, "acme", 0, 0)
	_, tok2, _, _ := a.CreateTenant(ctx, "beta", 0, 0)
	_, id, sha := newCred(t)
	if _, _, err := a.Enroll(ctx, vaultapi.EnrollRequest{Token: tok1, CredentialID: id, CredentialSHA256: sha}); err != nil {
		t.Fatal(err)
	}
	_, _, sha2 := newCred(t)
	if _, _, err := a.Enroll(ctx, vaultapi.EnrollRequest{Token: tok2, CredentialID: id, CredentialSHA256: sha2}); code(err) != vaultapi.CodeCredentialIDTaken {
		t.Fatalf("%v", err)
	}
}

func TestNoSecretsStored(t *testing.T) {
	dir := t.TempDir()
	s, _ := store.OpenLocal(dir, true)
	r, err := registry.New(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, tok, _, err := r.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	secretPart := tok.Reveal()[len("cft1_000000000000000000000000_"):]
	err = s.List(ctx, "", func(i store.Info) error {
		b, err := store.ReadAll(ctx, s, i.Name)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), secretPart) || strings.Contains(string(b), tok.Reveal()) {
			t.Errorf("%s holds the token secret", i.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
