package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// POST /v1/enroll refuses to re-enroll a revoked credential with 409, a
// message naming it, and no change: the credential stays revoked and the
// token enrolls a new credential afterwards.
func TestEnrollRevokedCredentialOverHTTP(t *testing.T) {
	ctx := context.Background()
	data, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := registry.New(data, store.RealClock)
	led, _ := ledger.New(data, data, store.RealClock, nil)
	cfg := Config{Data: data}
	(&State{Registry: reg, Ledger: led}).Configure(&cfg)
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	acme, tok, _, err := reg.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	enroll := func(tok vaultapi.Secret, id, sha string) (int, vaultapi.ErrorDetail) {
		body, _ := vaultapi.EnrollRequest{Token: tok, CredentialID: id, CredentialSHA256: sha, Host: "h1"}.Encode()
		resp, err := http.Post(ts.URL+vaultapi.RouteEnroll, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var eb vaultapi.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&eb)
		return resp.StatusCode, eb.Error
	}
	cred, id, sum, _ := vaultapi.NewCredential()
	sha := hex.EncodeToString(sum[:])
	if st, e := enroll(tok, id, sha); st != http.StatusCreated {
		t.Fatalf("enroll: %d %+v", st, e)
	}
	if err := reg.Revoke(ctx, acme.ID, id); err != nil {
		t.Fatal(err)
	}
	tok2, _, err := reg.NewToken(ctx, acme.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // refusals are not counted as failed authentications
		st, e := enroll(tok2, id, sha)
		if st != http.StatusConflict || e.Code != vaultapi.CodeCredentialIDTaken || !strings.Contains(e.Message, "credential "+id+" was revoked") {
			t.Fatalf("re-enroll revoked: %d %+v", st, e)
		}
	}
	if _, _, err := reg.Authenticate(ctx, cred.Reveal()); err == nil {
		t.Fatal("the revoked credential authenticates again")
	}
	_, id2, sum2, _ := vaultapi.NewCredential()
	if st, e := enroll(tok2, id2, hex.EncodeToString(sum2[:])); st != http.StatusCreated {
		t.Fatalf("the token was used up by the refusal: %d %+v", st, e)
	}
	creds, err := reg.Credentials(ctx, acme.ID)
	if err != nil || len(creds) != 2 {
		t.Fatalf("credentials: %d %v", len(creds), err)
	}
}
