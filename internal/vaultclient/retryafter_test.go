package vaultclient

import (
	"net/http"
	"testing"
	"time"
)

// TestRetryAfterDate: an HTTP-date Retry-After is measured against the
// reply's Date header, not this machine's clock; without a Date it falls
// back to the body's figure.
func TestRetryAfterDate(t *testing.T) {
	sent := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	resp := &http.Response{Header: http.Header{}}
	resp.Header.Set("Retry-After", sent.Add(42*time.Second).Format(http.TimeFormat))
	resp.Header.Set("Date", sent.Format(http.TimeFormat))
	if got := retryAfter(resp, 0); got != 42*time.Second {
		t.Fatalf("date form: %v, want 42s", got)
	}
	resp.Header.Del("Date")
	if got := retryAfter(resp, 5); got != 5*time.Second {
		t.Fatalf("date form without Date: %v, want the body's 5s", got)
	}
}
