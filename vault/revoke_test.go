package vault

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// uploadRevokedMidway streams a pack for A slowly, revokes A's credential
// once the first bytes are in, and returns the reply and how many bytes
// the client got to send. With last, the client sends all but the final
// byte at once, and that byte after the revocation.
func uploadRevokedMidway(t *testing.T, f *fixture, last bool) (*http.Response, vaultapi.ErrorDetail, int64, int) {
	t.Helper()
	addr := startServer(t, f)
	body := randBytes(64 << 10)
	c := dial(t, addr)
	fmt.Fprintf(c, "PUT /v1/repo/%s HTTP/1.1\r\nHost: vault\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
		packName(body), f.credA.Reveal(), len(body))
	first := 1000
	if last {
		first = len(body) - 1
	}
	_, _ = c.Write(body[:first])
	var sent atomic.Int64
	sent.Store(int64(first))
	time.Sleep(100 * time.Millisecond)
	f.auth.mu.Lock()
	f.auth.revoked[f.idA] = true
	f.auth.mu.Unlock()
	go func() {
		for off := first; off < len(body); off += 100 {
			time.Sleep(20 * time.Millisecond)
			if _, err := c.Write(body[off:min(off+100, len(body))]); err != nil {
				return
			}
			sent.Store(int64(min(off+100, len(body))))
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	var eb vaultapi.ErrorBody
	_ = json.NewDecoder(resp.Body).Decode(&eb)
	resp.Body.Close()
	return resp, eb.Error, sent.Load(), len(body)
}

// TestRevokedDuringUpload: revoking a credential stops its upload in
// flight: 401 credential_revoked, nothing stored, the reservation released.
// Mid-stream, the periodic check stops it before the body is all sent; at
// the last byte, the check before the store gets the last bytes does.
func TestRevokedDuringUpload(t *testing.T) {
	for _, last := range []bool{false, true} {
		t.Run(fmt.Sprintf("last=%v", last), func(t *testing.T) {
			lim := DefaultLimits()
			lim.AuthCacheTTL, lim.UploadRecheck = 0, 100*time.Millisecond
			if last {
				lim.UploadRecheck = time.Hour // only the check before the last bytes
			}
			f := newFixture(t, lim)
			before := snapshotStore(f.data, f.ledger)
			releases := f.ledger.releases
			resp, e, sent, total := uploadRevokedMidway(t, f, last)
			if resp.StatusCode != 401 || e.Code != vaultapi.CodeCredentialRevoked || !strings.Contains(e.Message, "was stopped and nothing was stored") {
				t.Fatalf("reply %d %+v", resp.StatusCode, e)
			}
			if !last && sent >= int64(total) {
				t.Errorf("the upload ran to its end (%d bytes) before it was stopped", sent)
			}
			if after := snapshotStore(f.data, f.ledger); after != before {
				t.Fatalf("store or ledger changed:\n%s\n%s", before, after)
			}
			f.ledger.mu.Lock()
			defer f.ledger.mu.Unlock()
			if f.ledger.releases != releases+1 || len(f.ledger.active) != 0 {
				t.Fatalf("reservation not released: %d releases, active %v", f.ledger.releases-releases, f.ledger.active)
			}
		})
	}
}
