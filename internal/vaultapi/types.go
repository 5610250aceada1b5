package vaultapi

import (
	"encoding/json"
	"time"
)

// EnrollRequest is the body of POST /v1/enroll. The agent draws its own
// credential and sends only the id and the hex SHA-256 of its secret, so a
// retried enrollment with the same token and hash is idempotent.
type EnrollRequest struct {
	Token            Secret `json:"token"`
	CredentialID     string `json:"credential_id"`
	CredentialSHA256 string `json:"credential_sha256"`
	Host             string `json:"host,omitempty"`
	Escrow           bool   `json:"escrow,omitempty"`
}

// Encode returns the JSON body to send, with the token revealed. (Plain
// json.Marshal redacts the token, so a logged request never leaks it.)
func (r EnrollRequest) Encode() ([]byte, error) {
	type wire struct {
		Token            string `json:"token"`
		CredentialID     string `json:"credential_id"`
		CredentialSHA256 string `json:"credential_sha256"`
		Host             string `json:"host,omitempty"`
		Escrow           bool   `json:"escrow,omitempty"`
	}
	return json.Marshal(wire{r.Token.Reveal(), r.CredentialID, r.CredentialSHA256, r.Host, r.Escrow})
}

// EnrollResponse is the 201 body of POST /v1/enroll.
type EnrollResponse struct {
	TenantID        string `json:"tenant_id"`
	TenantName      string `json:"tenant_name"`
	CredentialID    string `json:"credential_id"`
	EscrowAvailable bool   `json:"escrow_available,omitempty"`
}

// ObjectInfo is one entry of a list page.
type ObjectInfo struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	// Modified is when the object was stored (RFC 3339); absent when the
	// store cannot tell.
	Modified time.Time `json:"modified,omitzero"`
}

// ListPage is the body of GET /v1/list. Next is the after= value of the
// next page; "" means the listing is complete.
type ListPage struct {
	Objects []ObjectInfo `json:"objects"`
	Next    string       `json:"next"`
}

// Tenant states.
const (
	StateActive    = "active"
	StateSuspended = "suspended"
)

// TenantInfo is the body of GET /v1/tenant and of `cofferd tenant show
// --json`.
type TenantInfo struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	State       string    `json:"state"`
	SuspendedAt time.Time `json:"suspended_at,omitzero"`
	Reason      string    `json:"reason,omitempty"`
	Quota       int64     `json:"quota"` // bytes; 0 = none (QuotaUnlimited)
	// QuotaUnlimited says in so many words that the tenant has no quota.
	QuotaUnlimited bool      `json:"quota_unlimited"`
	Usage          UsageInfo `json:"usage"`
	Escrow         Escrow    `json:"escrow,omitzero"`
	// RTOSeconds is the recovery time objective restore drills are
	// measured against (cofferd tenant set-rto); absent: none.
	RTOSeconds float64 `json:"rto_seconds,omitempty"`
}

// Escrow states of a tenant.
const (
	EscrowYes     = "yes"     // an escrow slot is recorded
	EscrowNo      = "no"      // the agent enrolled without --escrow
	EscrowPending = "pending" // chosen at enrollment, no slot recorded yet
)

// Escrow is a tenant's escrow choice as the vault recorded it. Status ""
// means no agent has decided yet.
type Escrow struct {
	Status      string    `json:"status,omitempty"`
	DecidedAt   time.Time `json:"decided_at,omitzero"`
	DecidedBy   string    `json:"decided_by,omitempty"`  // the credential whose enrollment set Status
	Slot        string    `json:"slot,omitempty"`        // keys/<sha256> in the tenant's repository
	Fingerprint string    `json:"fingerprint,omitempty"` // of the escrow key the slot is sealed to
	RecordedAt  time.Time `json:"recorded_at,omitzero"`
}

// UsageInfo is a tenant's usage as the vault measured it (what it shows
// and bills), and, apart in Reported, what agents reported.
type UsageInfo struct {
	StoredBytes   int64 `json:"stored_bytes"`
	Objects       int64 `json:"objects"`
	Packs         int64 `json:"packs"`
	PackBytes     int64 `json:"pack_bytes"`
	Snapshots     int64 `json:"snapshots"`
	ReservedBytes int64 `json:"reserved_bytes"` // in flight
	// Reported is what the tenant's agents sent with their snapshot
	// uploads. The vault cannot decrypt snapshots to check it: it is shown
	// for information, never measured or billed.
	Reported ReportedUsage `json:"reported_by_agents"`
}

// ReportedUsage sums what agents reported with stored snapshots
// (HeaderLogicalBytes, HeaderDataBytes).
type ReportedUsage struct {
	LogicalBytes int64 `json:"logical_bytes"` // the disks' sizes
	DataBytes    int64 `json:"data_bytes"`    // their non-zero bytes
}
