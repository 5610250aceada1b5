// Package jobs owns the vault's background work on tenants' repositories,
// run by cofferd's commands and, leased, on a schedule inside cofferd
// serve. It reads a tenant's repository through a store.Store rooted at
// repos/<tenant id>/ and never holds a tenant's keys: what it can verify
// without them (object names, sizes, SHA-256 of the bytes, receipts) it
// verifies itself, and anything that needs the keys is internal/check's,
// opened with the provider's escrow identity by the command.
//
// check.go is the keyless check (cofferd check): every object's name
// against the repository grammar (internal/vaultapi), its size against its
// kind's limits, every small content-named object's SHA-256 against its
// name, and a deterministic sample of the packs (ReadDataPercent) likewise.
//
// gc.go is garbage collection from receipts alone: the GC state document
// per tenant (vault/gc/<tenant id>.json, changed only through
// registry.Update, compare-and-swap), marking, taking back, condemning and
// deleting packs in named batches, with the ledger kept exact. A job may be
// killed at any point and run again, and several replicas may run at once:
// every decision is re-checked against the document it changes.
//
// seedimport.go is cofferd seed import: a seed disk verified (tenant,
// signature, every hash), repaired from parity, and uploaded into its
// tenant's space under the tenant's import lease, each object reserved in
// the ledger tagged with the job, so a killed run's reservations are
// settled at once by the next (ledger.SettleJob); then marked imported.
//
// status.go is cofferd status: ComputeStatus, a pure function from each
// tenant's receipts, recovery point objectives, drill evidence, run records
// and usage to a typed report of every VM's state against its objective;
// statusread.go's StatusReader gathers those inputs from the stores
// without keys, caching what it parsed of immutable objects.
package jobs
