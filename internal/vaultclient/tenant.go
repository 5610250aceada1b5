package vaultclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// Tenant returns the tenant the credential belongs to (GET /v1/tenant):
// the agent names it in the operator commands it prints.
func (v *Client) Tenant(ctx context.Context) (*vaultapi.TenantInfo, error) {
	req, err := v.newRequest(ctx, http.MethodGet, v.endpoint(vaultapi.RouteTenant, nil), nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("vault %s: %w", v.Location(), transportError(err))
	}
	defer drainClose(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("vault %s: %w", v.Location(), v.statusError(resp, http.MethodGet, ""))
	}
	var t vaultapi.TenantInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&t); err != nil {
		return nil, fmt.Errorf("vault %s: the tenant reply is not valid JSON: %v", v.Location(), err)
	}
	return &t, nil
}
