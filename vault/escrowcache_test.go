package vault

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/clock/clocktest"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// countingEscrow answers EscrowRecipient with err, or a fixed recipient.
type countingEscrow struct {
	mu    sync.Mutex
	err   error
	calls int
}

func (e *countingEscrow) EscrowRecipient(ctx context.Context) (string, string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls++
	if e.err != nil {
		return "", "", e.err
	}
	return "age1recipient", "0123456789abcdef", nil
}

func (e *countingEscrow) RecordEscrowSlot(ctx context.Context, tenantID, slot string) error {
	return errors.New("not used")
}

func (e *countingEscrow) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls
}

// TestEscrowCachedAndRateLimited: GET /v1/escrow asks the store once per
// cache TTL, not per request, once a key exists (an absent key and a store
// failure are not kept), and one address over its rate gets 429
// rate_limited with Retry-After while another is served.
func TestEscrowCachedAndRateLimited(t *testing.T) {
	f := newFixture(t, DefaultLimits())
	esc := &countingEscrow{}
	f.srv.escrow = esc
	get := func(remote string) (int, vaultapi.ErrorDetail, string) {
		w := f.do(req{method: "GET", target: "/v1/escrow", remote: remote})
		return w.Code, errorOf(t, w), w.Header().Get("Retry-After")
	}
	for i := 0; i < 20; i++ { // the burst
		st, e, _ := get("198.51.100.1:1000")
		if st != 200 {
			t.Fatalf("request %d: %d %+v", i, st, e)
		}
	}
	w := f.do(req{method: "GET", target: "/v1/escrow", remote: "198.51.100.2:1000"})
	var got map[string]string
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &got) != nil || got["recipient"] != "age1recipient" || got["fingerprint"] != "0123456789abcdef" {
		t.Fatalf("cached reply: %d %s", w.Code, w.Body.String())
	}
	if n := esc.count(); n != 1 {
		t.Fatalf("store asked %d times for 21 requests, want 1", n)
	}
	st, e, ra := get("198.51.100.1:1000")
	if st != 429 || e.Code != vaultapi.CodeRateLimited || ra == "" || e.RetryAfterSeconds < 1 || !strings.Contains(e.Message, "escrow requests/s from this address") {
		t.Fatalf("over the rate: %d %+v Retry-After %q", st, e, ra)
	}
	if st, e, _ := get("198.51.100.3:1000"); st != 200 {
		t.Fatalf("another address: %d %+v", st, e)
	}

	// No escrow key: the absence is not kept, so a key made meanwhile
	// (cofferd escrow init) is seen by the next request; only requests
	// that arrived before a lookup started share it. The frozen clock makes
	// every request arrive at the instant the first lookup started.
	g := newFixture(t, DefaultLimits())
	clk := clocktest.New(time.Now())
	g.srv.clock = clk
	absent := &countingEscrow{err: store.ErrNotFound}
	g.srv.escrow = absent
	noEscrow := func() {
		t.Helper()
		if w := g.do(req{method: "GET", target: "/v1/escrow"}); w.Code != 404 || errorOf(t, w).Code != vaultapi.CodeNoEscrow {
			t.Fatalf("no escrow: %d %s", w.Code, w.Body.String())
		}
	}
	for i := 0; i < 5; i++ {
		noEscrow()
	}
	if n := absent.count(); n != 1 {
		t.Fatalf("store asked %d times for 5 requests that arrived as one lookup started, want 1", n)
	}
	clk.Advance(time.Millisecond)
	noEscrow()
	if n := absent.count(); n != 2 {
		t.Fatalf("store asked %d times, want a new lookup for a later request", n)
	}
	absent.mu.Lock()
	absent.err = nil // cofferd escrow init
	absent.mu.Unlock()
	clk.Advance(time.Millisecond)
	if w := g.do(req{method: "GET", target: "/v1/escrow"}); w.Code != 200 {
		t.Fatalf("escrow key made meanwhile: %d %s", w.Code, w.Body.String())
	}
	// A store failure is not kept: the next request asks again.
	h := newFixture(t, DefaultLimits())
	failing := &countingEscrow{err: errors.New("connection refused")}
	h.srv.escrow = failing
	for i := 0; i < 2; i++ {
		if w := h.do(req{method: "GET", target: "/v1/escrow"}); w.Code != 503 || errorOf(t, w).Code != vaultapi.CodeStoreUnavailable {
			t.Fatalf("store down: %d %s", w.Code, w.Body.String())
		}
	}
	if n := failing.count(); n != 2 {
		t.Fatalf("store asked %d times after failures, want 2", n)
	}
}
