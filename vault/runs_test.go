package vault

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// An agent stores its run records (runs/<sha256>) create-only and lists
// them; a body that does not match its name or is over the limit is
// refused. The vault takes the kind like any other content-named one.
func TestRunRecordObjects(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	body := []byte(`{"version":1,"result":"ok"}`)
	sum := sha256.Sum256(body)
	name := "runs/" + hex.EncodeToString(sum[:])
	if w := f.do(req{method: "PUT", target: "/v1/repo/" + name, cred: f.credA, body: body}); w.Code != 201 {
		t.Fatalf("put: %d %s", w.Code, w.Body.String())
	}
	if w := f.do(req{method: "PUT", target: "/v1/repo/" + name, cred: f.credA, body: body}); w.Code != 409 {
		t.Fatalf("put again: %d, want 409 (create-only)", w.Code)
	}
	if w := f.do(req{method: "GET", target: "/v1/list?prefix=runs%2F", cred: f.credA}); w.Code != 200 || !strings.Contains(w.Body.String(), name) {
		t.Fatalf("list runs/: %d %s", w.Code, w.Body.String())
	}
	if w := f.do(req{method: "GET", target: "/v1/repo/" + name, cred: f.credA}); w.Code != 200 || w.Body.String() != string(body) {
		t.Fatalf("get: %d %q", w.Code, w.Body.String())
	}
	if w := f.do(req{method: "PUT", target: "/v1/repo/runs/" + strings.Repeat("0", 64), cred: f.credA, body: body}); w.Code < 400 || w.Code == 409 {
		t.Fatalf("a body that does not match its name: %d", w.Code)
	}
	big := make([]byte, 64<<10+1)
	bs := sha256.Sum256(big)
	if w := f.do(req{method: "PUT", target: "/v1/repo/runs/" + hex.EncodeToString(bs[:]), cred: f.credA, body: big}); w.Code != 413 {
		t.Fatalf("oversize record: %d", w.Code)
	}
}
