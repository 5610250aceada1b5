package vaultclient_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// BeginUpload starts a session, beats and ends it on the session's routes;
// a vault older than sessions is ErrNotFound (the backup goes on without
// one); a malformed reply is a permanent error naming what is wrong.
func TestBeginUpload(t *testing.T) {
	f, srv := newFakeVault(t, true)
	var seen []string
	reply := `{"id":"0123456789abcdef01234567","started":"2026-12-05T01:00:00Z","heartbeat_seconds":300,"unusable":["` + strings.Repeat("a", 64) + `"]}`
	f.hook = func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, vaultapi.RouteSession) {
			return false
		}
		seen = append(seen, r.Method+" "+r.URL.Path)
		switch {
		case r.URL.Path == vaultapi.RouteSession:
			_, _ = w.Write([]byte(reply))
		default:
			w.WriteHeader(http.StatusNoContent)
		}
		return true
	}
	v := newVaultClient(t, f, srv)
	ctx := context.Background()
	us, err := v.BeginUpload(ctx)
	if err != nil || us.ID != "0123456789abcdef01234567" || len(us.Unusable) != 1 || us.Heartbeat.Seconds() != 300 {
		t.Fatalf("BeginUpload: %+v %v", us, err)
	}
	if err := us.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := us.End(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"POST /v1/session", "POST /v1/session/0123456789abcdef01234567", "DELETE /v1/session/0123456789abcdef01234567"}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Fatalf("requests %q, want %q", seen, want)
	}
	for _, bad := range []string{`{"id":"x","heartbeat_seconds":300}`, `{"id":"0123456789abcdef01234567","heartbeat_seconds":0}`,
		`{"id":"0123456789abcdef01234567","heartbeat_seconds":5,"unusable":["zz"]}`, `not json`} {
		reply = bad
		if _, err := v.BeginUpload(ctx); err == nil || !store.IsPermanent(err) {
			t.Errorf("reply %s: %v; want a permanent error", bad, err)
		}
	}
	f.hook = nil // the fake's default: no such route
	if _, err := v.BeginUpload(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an older vault: %v; want ErrNotFound", err)
	}
}
