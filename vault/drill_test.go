package vault

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// An agent stores drill evidence (drills/<sha256>) create-only and lists
// it; a body that does not match its name, one over the limit, or a name
// outside the grammar is refused.
func TestDrillEvidenceObjects(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	body := []byte(`{"version":1}`)
	sum := sha256.Sum256(body)
	name := "drills/" + hex.EncodeToString(sum[:])
	if w := f.do(req{method: "PUT", target: "/v1/repo/" + name, cred: f.credA, body: body}); w.Code != 201 {
		t.Fatalf("put: %d %s", w.Code, w.Body.String())
	}
	if w := f.do(req{method: "PUT", target: "/v1/repo/" + name, cred: f.credA, body: body}); w.Code != 409 {
		t.Fatalf("put again: %d, want 409 (create-only)", w.Code)
	}
	if w := f.do(req{method: "GET", target: "/v1/list?prefix=drills%2F", cred: f.credA}); w.Code != 200 || !strings.Contains(w.Body.String(), name) {
		t.Fatalf("list drills/: %d %s", w.Code, w.Body.String())
	}
	other := "drills/" + strings.Repeat("0", 64)
	if w := f.do(req{method: "PUT", target: "/v1/repo/" + other, cred: f.credA, body: body}); w.Code < 400 || w.Code == 409 {
		t.Fatalf("a body that does not match its name: %d", w.Code)
	}
	big := make([]byte, 64<<10+1)
	bs := sha256.Sum256(big)
	if w := f.do(req{method: "PUT", target: "/v1/repo/drills/" + hex.EncodeToString(bs[:]), cred: f.credA, body: big}); w.Code != 413 {
		t.Fatalf("oversize evidence: %d", w.Code)
	}
	if w := f.do(req{method: "PUT", target: "/v1/repo/drills/latest.json", cred: f.credA, body: body}); w.Code != 400 {
		t.Fatalf("a bad name: %d", w.Code)
	}
}
