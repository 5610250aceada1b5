// Package maint holds the vault's maintenance decisions as pure functions
// over receipts: which packs garbage collection marks, takes back and
// condemns (GCState, Plan, Claim). It reads no store and no clock; the
// vault's jobs (vault/jobs) do the I/O and hand it the time.
package maint
