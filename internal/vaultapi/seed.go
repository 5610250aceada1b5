package vaultapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Seed routes. The tenant comes from the credential, as everywhere.
//
//	POST RouteSigningKey             {"public_key": "ed25519:…"}: the tenant's
//	                                 seed signing key, learned once (SigningKeyRequest)
//	PUT  RouteSeeds/<id>             body: SEED.json, header HeaderSeedSignature:
//	                                 register a seed in transit (201 SeedInfo)
//	GET  RouteSeeds                  {"seeds": [SeedInfo…]}
//	GET  RouteSeeds/<id>             SeedInfo, with the import report once imported
//	GET  RouteSeeds/<id>/manifest    the registered SEED.json
//	POST RouteSeeds/<id>/confirm     the agent confirms the clean import report
//	POST RouteSeeds/<id>/cancel      {"reason": "…"}: declare the seed lost
//	                                 (SeedCancelRequest; 200 SeedInfo)
//	GET  RouteSeeds/<id>/lost        {"seed": id, "packs": […]}: the packs it held
//	                                 that the vault does not (SeedLostPacks)
const (
	RouteSigningKey = "/v1/signing-key"
	RouteSeeds      = "/v1/seeds"
)

// HeaderSeedSignature carries SEED.sig's hex on a seed registration.
const HeaderSeedSignature = "Coffer-Seed-Signature"

// MaxSeedManifest bounds a registered manifest (seed.MaxManifestSize).
const MaxSeedManifest = 512 << 20

// Seed error codes.
const (
	// CodeSeedPending: the object travels on a seed the vault has not
	// imported yet (409). Restores of snapshots that need it wait.
	CodeSeedPending = "seed_pending"
	// CodeBadSeed: a manifest that does not parse, is not this tenant's,
	// or whose signature does not verify (422).
	CodeBadSeed = "bad_seed"
	// CodeSeedInTransit: another seed of the tenant is still travelling
	// (409); one at a time.
	CodeSeedInTransit = "seed_in_transit"
	// CodeSigningKeyMismatch: the tenant has another signing key (409).
	CodeSigningKeyMismatch = "signing_key_mismatch"
	// CodeNoSigningKey: the tenant has no signing key yet (409).
	CodeNoSigningKey = "no_signing_key"
	// CodeSeedCancelled: the seed was declared lost (410): it is never
	// imported, and snapshots that needed it cannot be restored.
	CodeSeedCancelled = "seed_cancelled"
)

// SigningKeyRequest is the body of POST RouteSigningKey.
type SigningKeyRequest struct {
	PublicKey string `json:"public_key"`
}

// Seed states.
const (
	// SeedTravelling: registered, its disk not imported yet; snapshots
	// that need its packs wait.
	SeedTravelling = "travelling"
	// SeedImported: every object is in the vault; its snapshots restore.
	SeedImported = "imported"
	// SeedCancelled: declared lost (the disk lost, broken beyond its
	// parity, or never sent); it is never imported. Snapshots that needed
	// its packs are lost: never restorable, never safe.
	SeedCancelled = "cancelled"
)

// MaxSeedCancelReason bounds the reason given for a cancel, in bytes.
const MaxSeedCancelReason = 500

// SeedCancelRequest is the body of POST RouteSeeds/<id>/cancel.
type SeedCancelRequest struct {
	Reason string `json:"reason"`
}

// SeedLostPacks is the answer of GET RouteSeeds/<id>/lost: the packs of
// a cancelled seed the vault did not hold when it was cancelled. An agent
// drops them from its index so their chunks are uploaded again.
type SeedLostPacks struct {
	Seed  string   `json:"seed"`
	Packs []string `json:"packs"`
}

// SeedInfo is what the vault knows of one seed.
type SeedInfo struct {
	ID         string    `json:"id"`
	State      string    `json:"state"`
	Registered time.Time `json:"registered"`
	// Created and Host are the export's, from the manifest.
	Created   time.Time `json:"created"`
	Host      string    `json:"host,omitempty"`
	Objects   int       `json:"objects"`
	Bytes     int64     `json:"bytes"`
	Snapshots []string  `json:"snapshots"`
	// Signer is the fingerprint of the key that signed the manifest.
	Signer string      `json:"signer"`
	Report *SeedReport `json:"report,omitempty"`
	// Confirmed is when the tenant's agent confirmed the import report.
	Confirmed *time.Time `json:"confirmed,omitempty"`
	// Cancelled is when the seed was declared lost, Reason why.
	Cancelled *time.Time `json:"cancelled,omitempty"`
	Reason    string     `json:"reason,omitempty"`
}

// SeedReport is the import report of a seed.
type SeedReport struct {
	Seed     string    `json:"seed"`
	Tenant   string    `json:"tenant"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Seconds  float64   `json:"seconds"`
	// Objects and Bytes are the seed's objects; Uploaded those this
	// import stored, Present those the vault held already (an earlier,
	// interrupted run, or index files sent at export).
	Objects       int   `json:"objects"`
	Bytes         int64 `json:"bytes"`
	Uploaded      int   `json:"uploaded"`
	UploadedBytes int64 `json:"uploaded_bytes"`
	Present       int   `json:"present"`
	// Repaired are the files rebuilt from parity (parity files
	// themselves are only counted as damaged).
	Repaired []RepairedFile `json:"repaired"`
	// ManifestCopy: the first copy of the manifest was damaged.
	ManifestCopy bool   `json:"manifest_copy,omitempty"`
	Signer       string `json:"signer"`
	// Clean: every object of the seed is in the vault with the SHA-256 of
	// the signed manifest. The tenant may then release its source.
	Clean bool `json:"clean"`
}

// RepairedFile is a file of the seed the import found damaged.
type RepairedFile struct {
	Name    string `json:"name"`
	Problem string `json:"problem"`
	// Rebuilt is false for a damaged parity file (not needed as data).
	Rebuilt bool `json:"rebuilt"`
}

// MaxSeedLostPacks bounds a lost list: every pack of the largest manifest.
const MaxSeedLostPacks = 80 << 20

// ParseSeedLostPacks decodes a lost list of seed id, as the vault stores
// and serves it: its seed is id; every pack is 64 lower-case hex digits,
// sorted, none twice. Unknown fields are refused.
func ParseSeedLostPacks(b []byte, id string) (*SeedLostPacks, error) {
	if len(b) > MaxSeedLostPacks {
		return nil, fmt.Errorf("over %d bytes", MaxSeedLostPacks)
	}
	var lost SeedLostPacks
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&lost); err != nil {
		return nil, fmt.Errorf("not a lost list: %v", err)
	}
	if dec.More() {
		return nil, errors.New("not a lost list: data after the JSON value")
	}
	if lost.Seed != id {
		return nil, fmt.Errorf("it is the list of seed %q", clipID(lost.Seed))
	}
	if lost.Packs == nil {
		return nil, errors.New(`no "packs" array`)
	}
	for i, p := range lost.Packs {
		if !isHex64(p) {
			return nil, fmt.Errorf("pack %d (%q) is not 64 lower-case hex digits", i, clipID(p))
		}
		if i > 0 && lost.Packs[i-1] >= p {
			return nil, fmt.Errorf("pack %s is out of order or listed twice", p[:12])
		}
	}
	return &lost, nil
}

// clipID shortens an id from outside for an error message.
func clipID(s string) string {
	if len(s) > 70 {
		return s[:70] + "..."
	}
	return s
}
