// Package jobs is the vault's background work on tenants' repositories,
// done without their keys, from receipts alone: garbage collection (the
// GC state document per tenant, marking, taking back, condemning and
// deleting packs, with the ledger kept exact) and, built on it, retention.
//
// State lives in the vault's store under vault/gc/<tenant id>.json and is
// changed only through registry.Update (compare-and-swap), so a job may be
// killed at any point and run again, and several replicas may run at once:
// every decision is re-checked against the document it changes.
package jobs
