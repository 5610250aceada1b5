// Package ledger owns each tenant's usage accounting in the vault store,
// vault/usage/<tenant id>.json, changed only through registry.Update
// (compare-and-swap), so it stays exact with several cofferd replicas.
//
// An upload first Reserves its size (refused when it would exceed the
// tenant's quota, or while another upload of the same name holds a
// reservation), then Commits it when the object is stored or Releases it when
// not. A reservation whose holder vanished is settled after it expires: if the
// object exists with the reserved size it is committed, otherwise dropped.
// That is exact because the server stops writing an upload one minute before
// its reservation expires, settlement waits two minutes more, and a name has
// at most one reservation at a time. A job's reservations carry its name
// (Meta.Job); SettleJob settles those at once, before the job's next run,
// when a lease guarantees the killed run no longer writes.
package ledger
