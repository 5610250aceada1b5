package vault

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// Error is an API refusal: an HTTP status, a stable code from the wire
// contract (internal/vaultapi) and a message for the user. Adapters over the
// registry and the ledger return it so that the handler can answer exactly.
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration // > 0: sent as Retry-After (whole seconds, rounded up)
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code) }

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrBusy is what a Ledger returns when another upload of the same name holds
// the reservation; the handler answers 503 upload_in_progress.
var ErrBusy = errors.New("another upload of this object is in progress")

// errorBody is the JSON error document of the wire contract.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code              string `json:"code"`
	Message           string `json:"message"`
	RequestID         string `json:"request_id"`
	RetryAfterSeconds int    `json:"retry_after_seconds,omitempty"`
}

func retrySeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int(math.Ceil(d.Seconds()))
}

// writeError sends e as the JSON error body and records its code for the
// access log and metrics.
func writeError(w http.ResponseWriter, r *http.Request, e *Error) {
	info := reqInfoFrom(r.Context())
	if info != nil {
		info.code = e.Code
	}
	h := w.Header()
	h.Del("ETag")
	h.Del("Content-Length")
	h.Del("Accept-Ranges")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	body := errorBody{Error: errorDetail{Code: e.Code, Message: e.Message}}
	if info != nil {
		body.Error.RequestID = info.id
	}
	if s := retrySeconds(e.RetryAfter); s > 0 {
		h.Set("Retry-After", strconv.Itoa(s))
		body.Error.RetryAfterSeconds = s
	}
	b, _ := json.Marshal(body)
	b = append(b, '\n')
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// writeJSON sends a success document.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, r, Errorf(http.StatusInternalServerError, vaultapi.CodeInternal, "internal error"))
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		n, _ := w.Write(b)
		if info := reqInfoFrom(r.Context()); info != nil {
			info.bytesOut.Add(int64(n))
		}
	}
}
