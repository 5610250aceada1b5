package registry_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/registry"
)

func enrollReq(tok vaultapi.Secret, id, sha string) vaultapi.EnrollRequest {
	return vaultapi.EnrollRequest{Token: tok, CredentialID: id, CredentialSHA256: sha, Host: "xen2"}
}

// A refused enrollment (a revoked credential, a credential id taken) does
// not use up the token: a correct enrollment with it succeeds afterwards.
func TestEnrollRefusalKeepsToken(t *testing.T) {
	a, b, _, s := twoRegistries(t)
	ctx := context.Background()
	acme, tok1, _, err := a.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	credA, idA, shaA := newCred(t)
	if _, _, err := a.Enroll(ctx, enrollReq(tok1, idA, shaA)); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, acme.ID, idA); err != nil {
		t.Fatal(err)
	}
	credBefore, _ := store.ReadAll(ctx, s, "vault/creds/"+idA+".json")

	// The revoked credential, with a fresh token.
	tok2, _, err := a.NewToken(ctx, acme.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = b.Enroll(ctx, enrollReq(tok2, idA, shaA))
	if code(err) != vaultapi.CodeCredentialIDTaken || !strings.Contains(err.Error(), "credential "+idA+" was revoked on") ||
		!strings.Contains(err.Error(), "draw a new credential") {
		t.Fatalf("re-enrolling a revoked credential: %v", err)
	}
	if credAfter, _ := store.ReadAll(ctx, s, "vault/creds/"+idA+".json"); string(credAfter) != string(credBefore) {
		t.Fatalf("the refused enrollment changed the credential:\n%s\n%s", credBefore, credAfter)
	}
	if _, _, err := a.Authenticate(ctx, credA.Reveal()); code(err) != vaultapi.CodeCredentialRevoked {
		t.Fatalf("revoked credential authenticates after a refused re-enrollment: %v", err)
	}
	credB, idB, shaB := newCred(t)
	if _, _, err := a.Enroll(ctx, enrollReq(tok2, idB, shaB)); err != nil {
		t.Fatalf("the token did not survive the refused enrollment: %v", err)
	}
	if ten, _, err := b.Authenticate(ctx, credB.Reveal()); err != nil || ten.ID != acme.ID {
		t.Fatalf("new credential: %v", err)
	}

	// A credential id taken by another tenant's agent.
	_, tok3, _, err := a.CreateTenant(ctx, "beta", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _, shaOther := newCred(t)
	_, _, err = a.Enroll(ctx, enrollReq(tok3, idB, shaOther))
	if code(err) != vaultapi.CodeCredentialIDTaken || !strings.Contains(err.Error(), "credential id "+idB+" is taken") {
		t.Fatalf("taken id: %v", err)
	}
	_, idC, shaC := newCred(t)
	if _, _, err := b.Enroll(ctx, enrollReq(tok3, idC, shaC)); err != nil {
		t.Fatalf("the token did not survive the taken id: %v", err)
	}
	creds, err := a.Credentials(ctx, acme.ID)
	if err != nil || len(creds) != 2 {
		t.Fatalf("acme's credentials: %v %v", creds, err)
	}
	for _, c := range creds {
		if c.IsRevoked() != (c.ID == idA) {
			t.Errorf("credential %+v", c)
		}
	}
}

// The same credential enrolls again: after a lost reply, after a crash
// between the token claim and the credential, and with a second token
// (which stays unused).
func TestEnrollRetrySameCredential(t *testing.T) {
	a, b, clock, s := twoRegistries(t)
	ctx := context.Background()
	acme, tok, _, err := a.CreateTenant(ctx, "acme", 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cred, id, sha := newCred(t)
	if _, _, err := a.Enroll(ctx, enrollReq(tok, id, sha)); err != nil {
		t.Fatal(err)
	}
	// The credential document lost (a crash after the token was claimed).
	if err := s.Delete(ctx, "vault/creds/"+id+".json"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Hour) // the token expired meanwhile: a retry still completes
	if _, c, err := b.Enroll(ctx, enrollReq(tok, id, sha)); err != nil || c.ID != id {
		t.Fatalf("retry after a crash: %v", err)
	}
	if _, _, err := a.Authenticate(ctx, cred.Reveal()); err != nil {
		t.Fatalf("retried credential: %v", err)
	}
	// Enrolled already, a second token: success, and that token stays free.
	tok2, _, err := a.NewToken(ctx, acme.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, c, err := a.Enroll(ctx, enrollReq(tok2, id, sha)); err != nil || c.ID != id {
		t.Fatalf("an enrolled credential with a second token: %v", err)
	}
	_, id2, sha2 := newCred(t)
	if _, _, err := b.Enroll(ctx, enrollReq(tok2, id2, sha2)); err != nil {
		t.Fatalf("the second token was used up: %v", err)
	}
}

// raceStore creates a credential document with another hash just after a
// token is claimed: a concurrent enrollment that took the id.
type raceStore struct {
	store.Store
	sw     store.Swapper
	credID string
	fired  bool
}

func (r *raceStore) ReadVersioned(ctx context.Context, name string, max int64) ([]byte, string, error) {
	return r.sw.ReadVersioned(ctx, name, max)
}

func (r *raceStore) Swap(ctx context.Context, name string, b []byte, ifVersion string) (string, error) {
	v, err := r.sw.Swap(ctx, name, b, ifVersion)
	if err == nil && !r.fired && strings.HasPrefix(name, "vault/tokens/") && strings.Contains(string(b), `"used"`) {
		r.fired = true
		doc, _ := json.Marshal(map[string]any{"rev": 1, "id": r.credID, "tenant": "000000000000000000000000",
			"secret_sha256": strings.Repeat("ab", 32), "token": "x", "created": time.Now()})
		if _, err := r.sw.Swap(ctx, "vault/creds/"+r.credID+".json", doc, ""); err != nil {
			return "", err
		}
	}
	return v, err
}

func TestEnrollRaceOnCredentialIDGivesTokenBack(t *testing.T) {
	local, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	sw, _ := store.As[store.Swapper](local)
	_, id, sha := newCred(t)
	rs := &raceStore{Store: local, sw: sw, credID: id}
	r, err := registry.New(rs, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, tok, _, err := r.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Enroll(ctx, enrollReq(tok, id, sha)); code(err) != vaultapi.CodeCredentialIDTaken {
		t.Fatalf("lost race: %v", err)
	}
	_, id2, sha2 := newCred(t)
	if _, _, err := r.Enroll(ctx, enrollReq(tok, id2, sha2)); err != nil {
		t.Fatalf("the token was not given back: %v", err)
	}
}

// A revoked credential sent again with the token that enrolled it: refused,
// and the message says that token is used up. A token claimed by an
// attempt whose credential id turned out taken is given back.
func TestEnrollRevokedWithItsOwnToken(t *testing.T) {
	a, _, _, s := twoRegistries(t)
	ctx := context.Background()
	acme, tok, _, err := a.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, id, sha := newCred(t)
	if _, _, err := a.Enroll(ctx, enrollReq(tok, id, sha)); err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, acme.ID, id); err != nil {
		t.Fatal(err)
	}
	_, _, err = a.Enroll(ctx, enrollReq(tok, id, sha))
	if code(err) != vaultapi.CodeCredentialIDTaken || !strings.Contains(err.Error(), "was revoked") ||
		!strings.Contains(err.Error(), "is used up): cofferd tenant token acme") {
		t.Fatalf("revoked with its own token: %v", err)
	}

	// An earlier attempt claimed tok2 for id2, and id2's document is
	// another agent's (the attempt lost a race and then crashed).
	tok2, _, err := a.NewToken(ctx, acme.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, id2, sha2 := newCred(t)
	if _, _, err := a.Enroll(ctx, enrollReq(tok2, id2, sha2)); err != nil {
		t.Fatal(err)
	}
	doc, _ := store.ReadAll(ctx, s, "vault/creds/"+id2+".json")
	other := strings.Replace(string(doc), sha2, strings.Repeat("cd", 32), 1)
	if err := s.Delete(ctx, "vault/creds/"+id2+".json"); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "vault/creds/"+id2+".json", strings.NewReader(other), int64(len(other))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Enroll(ctx, enrollReq(tok2, id2, sha2)); code(err) != vaultapi.CodeCredentialIDTaken || !strings.Contains(err.Error(), "it was not used") {
		t.Fatalf("taken id after a claim: %v", err)
	}
	_, id3, sha3 := newCred(t)
	if _, _, err := a.Enroll(ctx, enrollReq(tok2, id3, sha3)); err != nil {
		t.Fatalf("the token claimed for a taken id was not given back: %v", err)
	}
}
