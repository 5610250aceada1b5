package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/clock"
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
	srv := newStateServer(t, Limits{})
	reg := srv.reg
	acme, tok, _, err := reg.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	enroll := func(tok vaultapi.Secret, id, sha string) (int, vaultapi.ErrorDetail) {
		body, _ := vaultapi.EnrollRequest{Token: tok, CredentialID: id, CredentialSHA256: sha, Host: "h1"}.Encode()
		resp, err := http.Post(srv.url+vaultapi.RouteEnroll, "application/json", bytes.NewReader(body))
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

// The scenario of a second agent that enrolled, stopped at a mistyped
// passphrase, and enrolls again with the same credential and a changed
// escrow choice: 201 both times, one credential, the token not reusable by
// anyone else, and the escrow record follows the retry.
func TestEnrollRetryAfterAgentStopped(t *testing.T) {
	ctx := context.Background()
	data, _ := store.OpenLocal(t.TempDir(), true)
	reg, _ := registry.New(data, clock.Real)
	led, _ := ledger.New(data, data, clock.Real, nil)
	st := &State{Registry: reg, Ledger: led}
	acme, tok, _, err := reg.CreateTenant(ctx, "acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, id, sum, _ := vaultapi.NewCredential()
	req := vaultapi.EnrollRequest{Token: tok, CredentialID: id, CredentialSHA256: hex.EncodeToString(sum[:]), Escrow: true}
	if _, err := st.Enroll(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.Escrow = false
	if resp, err := st.Enroll(ctx, req); err != nil || resp.CredentialID != id {
		t.Fatalf("retry: %+v %v", resp, err)
	}
	ti, err := st.TenantInfo(ctx, acme.ID)
	if err != nil || ti.Escrow.Status != vaultapi.EscrowNo {
		t.Fatalf("escrow after the retry: %+v %v", ti, err)
	}
	_, other, sum2, _ := vaultapi.NewCredential()
	if _, err := st.Enroll(ctx, vaultapi.EnrollRequest{Token: tok, CredentialID: other, CredentialSHA256: hex.EncodeToString(sum2[:])}); err == nil ||
		!strings.Contains(err.Error(), "already used") {
		t.Fatalf("another credential with the used token: %v", err)
	}
	if creds, _ := reg.Credentials(ctx, acme.ID); len(creds) != 1 {
		t.Fatalf("%d credentials", len(creds))
	}
}
