package vault

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// TestWithRegistryAndLedger runs the server over the real store-backed
// registry and ledger: enroll, upload, quota, usage, token reuse,
// revocation and suspension.
func TestWithRegistryAndLedger(t *testing.T) {
	ctx := context.Background()
	srv := newStateServer(t, Limits{})
	reg := srv.reg
	tenant, tok, _, err := reg.CreateTenant(ctx, "acme", 1<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path string, cred vaultapi.Secret, body []byte) (int, vaultapi.ErrorDetail, []byte) {
		t.Helper()
		r, _ := http.NewRequest(method, srv.url+path, bytes.NewReader(body))
		if cred != "" {
			r.Header.Set("Authorization", "Bearer "+cred.Reveal())
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		var eb vaultapi.ErrorBody
		if resp.StatusCode >= 400 {
			_ = json.Unmarshal(buf.Bytes(), &eb)
		}
		return resp.StatusCode, eb.Error, buf.Bytes()
	}
	enroll := func(tok vaultapi.Secret) (vaultapi.Secret, string, int, vaultapi.ErrorDetail) {
		cred, id, sum, err := vaultapi.NewCredential()
		if err != nil {
			t.Fatal(err)
		}
		body, _ := vaultapi.EnrollRequest{Token: tok, CredentialID: id, CredentialSHA256: hex.EncodeToString(sum[:]), Host: "h1"}.Encode()
		st, e, _ := call("POST", "/v1/enroll", "", body)
		return cred, id, st, e
	}
	cred, credID, st, e := enroll(tok)
	if st != 201 {
		t.Fatalf("enroll: %d %+v", st, e)
	}
	if _, _, st, e = enroll(tok); st != 409 || e.Code != vaultapi.CodeTokenUsed {
		t.Fatalf("token reuse: %d %+v", st, e)
	}
	pack := randBytes(300 << 10)
	if st, e, _ = call("PUT", "/v1/repo/"+packName(pack), cred, pack); st != 201 {
		t.Fatalf("put: %d %+v", st, e)
	}
	bad := randBytes(1000)
	if st, e, _ = call("PUT", "/v1/repo/"+packName(bad[:1]), cred, bad); st != 400 || e.Code != vaultapi.CodeDigestMismatch {
		t.Fatalf("mismatch: %d %+v", st, e)
	}
	big := randBytes(900 << 10)
	if st, e, _ = call("PUT", "/v1/repo/"+packName(big), cred, big); st != 507 || !strings.Contains(e.Message, "quota 1.00 MiB") {
		t.Fatalf("quota: %d %+v", st, e)
	}
	st, _, body := call("GET", "/v1/tenant", cred, nil)
	var ti vaultapi.TenantInfo
	if st != 200 || json.Unmarshal(body, &ti) != nil || ti.Usage.StoredBytes != int64(len(pack)) || ti.Usage.ReservedBytes != 0 || ti.Name != "acme" {
		t.Fatalf("tenant info: %d %s", st, body)
	}
	if _, err := reg.Suspend(ctx, tenant.ID, "unpaid"); err != nil {
		t.Fatal(err)
	}
	if st, e, _ = call("GET", "/v1/repo/"+packName(pack), cred, nil); st != 403 || !strings.Contains(e.Message, "unpaid") {
		t.Fatalf("suspended: %d %+v", st, e)
	}
	if _, err := reg.Resume(ctx, tenant.ID); err != nil {
		t.Fatal(err)
	}
	if err := reg.Revoke(ctx, tenant.ID, credID); err != nil {
		t.Fatal(err)
	}
	if st, e, _ = call("GET", "/v1/repo/"+packName(pack), cred, nil); st != 401 || e.Code != vaultapi.CodeCredentialRevoked {
		t.Fatalf("revoked: %d %+v", st, e)
	}
}
