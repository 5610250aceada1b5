package vaultapi

import (
	"fmt"
	"net/http"
)

// Routes. No route takes a tenant ID: the tenant comes from the credential.
const (
	RouteRepo       = "/v1/repo/" // + object name: PUT, GET, HEAD (DELETE is refused)
	RouteList       = "/v1/list"  // GET ?prefix=&after=&limit=
	RouteEnroll     = "/v1/enroll"
	RouteTenant     = "/v1/tenant"
	RouteEscrow     = "/v1/escrow"
	RouteEscrowSlot = "/v1/escrow/slot"
	// RouteSession: POST starts an upload session (SessionInfo); POST
	// RouteSession/<id> is its heartbeat, DELETE RouteSession/<id> ends it.
	RouteSession = "/v1/session"
	RouteHealthz = "/healthz"
)

// Headers.
const (
	// HeaderLogicalBytes and HeaderDataBytes carry agent-reported sizes on
	// snapshot PUTs (the vault cannot decrypt and measure them itself).
	HeaderLogicalBytes = "Coffer-Logical-Bytes"
	HeaderDataBytes    = "Coffer-Data-Bytes"
	HeaderRequestID    = "X-Request-Id"
	// HeaderAcceptDirect (value "1") on a GET says the agent can follow a
	// 307 Temporary Redirect to a presigned URL of the vault's store, to
	// which it sends the Range and nothing else (direct downloads).
	HeaderAcceptDirect = "Coffer-Accept-Direct"
)

// List limits.
const (
	DefaultListLimit = 1000
	MaxListLimit     = 10000
)

// MaxEnrollBody bounds the JSON body of POST /v1/enroll.
const MaxEnrollBody = 4 << 10

// Error codes of the JSON error body.
const (
	CodeBadName           = "bad_name"
	CodeBadPath           = "bad_path"
	CodeBadPrefix         = "bad_prefix"
	CodeUnauthenticated   = "unauthenticated"
	CodeInvalidCredential = "invalid_credential"
	CodeCredentialRevoked = "credential_revoked"
	CodeTokenExpired      = "token_expired"
	CodeTokenUsed         = "token_used"
	CodeTenantSuspended   = "tenant_suspended"
	CodeAppendOnly        = "append_only"
	CodeExists            = "exists"
	CodeNotFound          = "not_found"
	CodeDigestMismatch    = "digest_mismatch"
	CodeTruncated         = "truncated"
	CodeTooLarge          = "too_large"
	CodeLengthRequired    = "length_required"
	CodeTooSlow           = "too_slow"
	CodeQuotaExceeded     = "quota_exceeded"
	CodeRateLimited       = "rate_limited"
	CodeTooManyUploads    = "too_many_uploads"
	CodeStoreUnavailable  = "store_unavailable"
	CodeInvalidRange      = "invalid_range"
	CodeBadRequest        = "bad_request"
	CodeInternal          = "internal"
	// Codes named by the design beyond the core set.
	CodeUploadInProgress  = "upload_in_progress"
	CodeStoreFull         = "store_full"
	CodeCredentialIDTaken = "credential_id_taken"
	CodeBusy              = "busy"
	CodeNoEscrow          = "no_escrow"
	CodeDraining          = "draining"
	CodeStoreUnreachable  = "store_unreachable"
	CodeMethodNotAllowed  = "method_not_allowed"
	CodeURITooLong        = "uri_too_long"
	CodeTooManyDownloads  = "too_many_downloads"
	CodeTooManyAuthFails  = "too_many_auth_failures"
	// CodeTooManyKeySlots refuses a key slot over the tenant's limit.
	CodeTooManyKeySlots = "too_many_key_slots"
	// CodeBadReceipt refuses a receipt that does not parse or names
	// packs the vault does not hold.
	CodeBadReceipt = "bad_receipt"
	// CodeReceiptRefused refuses a receipt that names packs garbage
	// collection is deleting: back up again without them.
	CodeReceiptRefused = "receipt_refused"
)

var codeStatus = map[string]int{
	CodeBadName:            http.StatusBadRequest,
	CodeBadPath:            http.StatusBadRequest,
	CodeBadPrefix:          http.StatusBadRequest,
	CodeUnauthenticated:    http.StatusUnauthorized,
	CodeInvalidCredential:  http.StatusUnauthorized,
	CodeCredentialRevoked:  http.StatusUnauthorized,
	CodeTokenExpired:       http.StatusUnauthorized,
	CodeTokenUsed:          http.StatusConflict,
	CodeTenantSuspended:    http.StatusForbidden,
	CodeAppendOnly:         http.StatusForbidden,
	CodeExists:             http.StatusConflict,
	CodeNotFound:           http.StatusNotFound,
	CodeDigestMismatch:     http.StatusBadRequest,
	CodeTruncated:          http.StatusBadRequest,
	CodeTooLarge:           http.StatusRequestEntityTooLarge,
	CodeLengthRequired:     http.StatusLengthRequired,
	CodeTooSlow:            http.StatusRequestTimeout,
	CodeQuotaExceeded:      http.StatusInsufficientStorage,
	CodeRateLimited:        http.StatusTooManyRequests,
	CodeTooManyUploads:     http.StatusTooManyRequests,
	CodeStoreUnavailable:   http.StatusServiceUnavailable,
	CodeInvalidRange:       http.StatusRequestedRangeNotSatisfiable,
	CodeBadRequest:         http.StatusBadRequest,
	CodeInternal:           http.StatusInternalServerError,
	CodeUploadInProgress:   http.StatusServiceUnavailable,
	CodeStoreFull:          http.StatusInsufficientStorage,
	CodeURITooLong:         http.StatusRequestURITooLong,
	CodeTooManyDownloads:   http.StatusTooManyRequests,
	CodeTooManyAuthFails:   http.StatusTooManyRequests,
	CodeCredentialIDTaken:  http.StatusConflict,
	CodeBusy:               http.StatusServiceUnavailable,
	CodeNoEscrow:           http.StatusNotFound,
	CodeDraining:           http.StatusServiceUnavailable,
	CodeStoreUnreachable:   http.StatusServiceUnavailable,
	CodeMethodNotAllowed:   http.StatusMethodNotAllowed,
	CodeTooManyKeySlots:    http.StatusForbidden,
	CodeBadReceipt:         http.StatusUnprocessableEntity,
	CodeReceiptRefused:     http.StatusConflict,
	CodeSeedPending:        http.StatusConflict,
	CodeBadSeed:            http.StatusUnprocessableEntity,
	CodeSeedInTransit:      http.StatusConflict,
	CodeSigningKeyMismatch: http.StatusConflict,
	CodeNoSigningKey:       http.StatusConflict,
	CodeSeedCancelled:      http.StatusGone,
}

// StatusOf returns the HTTP status a code is answered with (500 for an
// unknown code).
func StatusOf(code string) int {
	if s, ok := codeStatus[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// ErrorBody is the JSON body of every error reply:
// {"error":{"code":…,"message":…,"request_id":…,"retry_after_seconds":n}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inner object of ErrorBody.
type ErrorDetail struct {
	Code              string `json:"code"`
	Message           string `json:"message"`
	RequestID         string `json:"request_id,omitempty"`
	RetryAfterSeconds int    `json:"retry_after_seconds,omitempty"`
}

// Error is an error that carries its wire code and HTTP status. Packages
// below the HTTP server (registry, ledger) return it so the server can
// answer with the right code; Message is written for the person who reads
// it and never contains a secret.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Message }

// Errorf builds an *Error whose status follows from code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Status: StatusOf(code), Code: code, Message: fmt.Sprintf(format, args...)}
}
