package vault

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// GET /v1/tenant keeps what agents reported with a snapshot apart from
// what the vault measured.
func TestTenantUsageLabelsReported(t *testing.T) {
	ctx := context.Background()
	srv := newStateServer(t, Limits{})
	reg := srv.reg
	_, tok, _, _ := reg.CreateTenant(ctx, "acme", 0, 0)
	cred, id, sum, _ := vaultapi.NewCredential()
	if _, _, err := reg.Enroll(ctx, vaultapi.EnrollRequest{Token: tok, CredentialID: id, CredentialSHA256: hex.EncodeToString(sum[:])}); err != nil {
		t.Fatal(err)
	}
	snap := bytes.Repeat([]byte("s"), 500)
	h := sha256.Sum256(snap)
	req, _ := http.NewRequest("PUT", srv.url+"/v1/repo/snapshots/"+hex.EncodeToString(h[:]), bytes.NewReader(snap))
	req.Header.Set("Authorization", "Bearer "+cred.Reveal())
	req.Header.Set(vaultapi.HeaderLogicalBytes, "10737418240")
	req.Header.Set(vaultapi.HeaderDataBytes, "3221225472")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("put snapshot: %v %v", resp, err)
	}
	resp.Body.Close()
	req, _ = http.NewRequest("GET", srv.url+vaultapi.RouteTenant, nil)
	req.Header.Set("Authorization", "Bearer "+cred.Reveal())
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Usage map[string]json.RawMessage `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	var rep vaultapi.ReportedUsage
	if err := json.Unmarshal(body.Usage["reported_by_agents"], &rep); err != nil || rep.LogicalBytes != 10<<30 || rep.DataBytes != 3<<30 {
		t.Fatalf("reported_by_agents = %s (%v)", body.Usage["reported_by_agents"], err)
	}
	if _, ok := body.Usage["logical_bytes"]; ok {
		t.Fatal("usage mixes the agents' logical_bytes with the measured counters")
	}
	if string(body.Usage["stored_bytes"]) != "500" || string(body.Usage["snapshots"]) != "1" {
		t.Fatalf("measured usage: %v", body.Usage)
	}
}
