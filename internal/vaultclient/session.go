package vaultclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// maxSessionReply bounds the start reply: its unusable packs.
const maxSessionReply = 64 << 20

// BeginUpload implements store.UploadSessions: it starts an upload session
// with the vault's garbage collector (POST /v1/session).
func (v *Client) BeginUpload(ctx context.Context) (*store.UploadSession, error) {
	var info vaultapi.SessionInfo
	if err := v.sessionCall(ctx, http.MethodPost, vaultapi.RouteSession, http.StatusOK, &info); err != nil {
		return nil, err
	}
	if !vaultapi.ValidID(info.ID) || info.Heartbeat <= 0 {
		return nil, &store.PermanentError{Err: fmt.Errorf("vault %s: the session reply is malformed (id %q, heartbeat %d)", v.Location(), clipID(info.ID), info.Heartbeat)}
	}
	for _, p := range info.Unusable {
		if len(p) != 64 {
			return nil, &store.PermanentError{Err: fmt.Errorf("vault %s: the session reply names a malformed pack %q", v.Location(), clipID(p))}
		}
	}
	route := vaultapi.RouteSession + "/" + info.ID
	return &store.UploadSession{
		ID: info.ID, Started: info.Started, Heartbeat: time.Duration(info.Heartbeat) * time.Second, Unusable: info.Unusable,
		Beat: func(ctx context.Context) error {
			return v.sessionCall(ctx, http.MethodPost, route, http.StatusNoContent, nil)
		},
		End: func(ctx context.Context) error {
			return v.sessionCall(ctx, http.MethodDelete, route, http.StatusNoContent, nil)
		},
	}, nil
}

func (v *Client) sessionCall(ctx context.Context, method, route string, want int, out any) error {
	req, err := v.newRequest(ctx, method, v.endpoint(route, nil), nil)
	if err != nil {
		return err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("vault %s: %w", v.Location(), transportError(err))
	}
	defer drainClose(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("vault %s: upload session: %w", v.Location(), v.statusError(resp, method, ""))
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxSessionReply)).Decode(out); err != nil {
		return &store.PermanentError{Err: fmt.Errorf("vault %s: the session reply is not valid JSON: %v", v.Location(), err)}
	}
	return nil
}

// clipID shortens an identifier from the vault before it goes into an error.
func clipID(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
