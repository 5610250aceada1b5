package vault

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/maint"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/jobs"
)

func receiptBody(t *testing.T, packs ...string) (string, []byte) {
	t.Helper()
	slices.Sort(packs)
	rc := &vaultapi.Receipt{Version: 1, Snapshot: strings.Repeat("5", 64), Name: "web01", Time: time.Now().UTC(),
		Source: "image", Disks: []vaultapi.ReceiptDisk{{Size: 1 << 20}}, Packs: packs}
	b, err := json.Marshal(rc)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "receipts/" + hex.EncodeToString(sum[:]), b
}

func packIDOf(name string) string { return name[len(name)-64:] }

// TestReceiptsAreChecked: the vault stores a receipt only when it parses
// and names packs the tenant holds; another tenant's pack counts as
// missing; a receipt naming a pack GC is deleting is refused, one naming a
// marked pack takes it back.
func TestReceiptsAreChecked(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	a := packIDOf(f.packA)

	name, body := receiptBody(t, a)
	f.mustPut(f.credA, name, body)

	bad := []byte(`{"version":1,"snapshot":"x"}`)
	bs := sha256.Sum256(bad)
	w := f.do(req{method: "PUT", target: "/v1/repo/receipts/" + hex.EncodeToString(bs[:]), cred: f.credA, body: bad})
	if e := errorOf(t, w); w.Code != http.StatusUnprocessableEntity || e.Code != vaultapi.CodeBadReceipt {
		t.Fatalf("malformed receipt: %d %+v", w.Code, e)
	}
	name, body = receiptBody(t, packIDOf(f.packB)) // B's pack, posted by A
	w = f.do(req{method: "PUT", target: "/v1/repo/" + name, cred: f.credA, body: body})
	if e := errorOf(t, w); w.Code != http.StatusUnprocessableEntity || !strings.Contains(e.Message, "does not hold") {
		t.Fatalf("a receipt naming another tenant's pack: %d %+v", w.Code, e)
	}

	// GC marks A's second pack, then condemns a third.
	sw, _ := store.As[store.Swapper](f.data)
	p2b := randBytes(3000)
	p2 := packName(p2b)
	f.mustPut(f.credA, p2, p2b)
	p3b := randBytes(3000)
	p3 := packName(p3b)
	f.mustPut(f.credA, p3, p3b)
	now := time.Now()
	_, err := jobs.UpdateSession(t.Context(), sw, tenantA, func(*maint.GCState) (*maint.GCState, bool) {
		return &maint.GCState{Version: maint.GCVersion, Marked: map[string]time.Time{packIDOf(p2): now},
			Deleting: map[string]maint.Doomed{packIDOf(p3): {Size: 3000, Condemned: now}}}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := jobs.LoadGCState(t.Context(), sw, tenantA)
	if _, marked := st.Marked[packIDOf(p2)]; !marked || len(st.Deleting) != 1 {
		t.Fatalf("setup: %+v", st)
	}
	name, body = receiptBody(t, a, packIDOf(p3))
	w = f.do(req{method: "PUT", target: "/v1/repo/" + name, cred: f.credA, body: body})
	if e := errorOf(t, w); w.Code != http.StatusConflict || e.Code != vaultapi.CodeReceiptRefused {
		t.Fatalf("a receipt naming a condemned pack: %d %+v", w.Code, e)
	}
	if _, err := f.data.Stat(t.Context(), objectKey(tenantA, name)); err == nil {
		t.Fatal("a refused receipt was stored")
	}
	name, body = receiptBody(t, packIDOf(p2))
	f.mustPut(f.credA, name, body)
	st, _ = jobs.LoadGCState(t.Context(), sw, tenantA)
	if _, marked := st.Marked[packIDOf(p2)]; marked {
		t.Fatal("a stored receipt did not take its marked pack back")
	}
}

// TestUploadSessions: start, heartbeat, end; an expired or unknown session
// is 404; the start names the packs the agent must not use.
func TestUploadSessions(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	w := f.do(req{method: "POST", target: "/v1/session", cred: f.credA})
	var info vaultapi.SessionInfo
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &info) != nil || !vaultapi.ValidID(info.ID) || info.Heartbeat <= 0 {
		t.Fatalf("start: %d %s", w.Code, w.Body.String())
	}
	if w := f.do(req{method: "POST", target: "/v1/session/" + info.ID, cred: f.credA}); w.Code != 204 {
		t.Fatalf("heartbeat: %d %s", w.Code, w.Body.String())
	}
	if w := f.do(req{method: "POST", target: "/v1/session/" + info.ID, cred: f.credB}); w.Code != 404 {
		t.Fatalf("another tenant's heartbeat: %d", w.Code)
	}
	if w := f.do(req{method: "DELETE", target: "/v1/session/" + info.ID, cred: f.credA}); w.Code != 204 {
		t.Fatalf("end: %d", w.Code)
	}
	if w := f.do(req{method: "POST", target: "/v1/session/" + info.ID, cred: f.credA}); w.Code != 404 {
		t.Fatalf("heartbeat after the end: %d", w.Code)
	}
	if w := f.do(req{method: "POST", target: "/v1/session/nothex", cred: f.credA}); w.Code != 400 {
		t.Fatalf("malformed id: %d", w.Code)
	}
	if w := f.do(req{method: "POST", target: "/v1/session"}); w.Code != 401 {
		t.Fatalf("no credential: %d", w.Code)
	}
}
