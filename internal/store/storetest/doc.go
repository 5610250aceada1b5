// Package storetest owns the conformance suites for the store interfaces:
// Run checks store.Store, the behaviour the repository layer relies on
// (create-only atomic Put, exact ranged Get, prefix List, idempotent Delete,
// name validation, sentinel errors); RunSwapper checks store.Swapper, the
// compare-and-swap the vault's state relies on (no lost update among
// concurrent writers, ErrConflict otherwise); RunLocker checks store.Locker,
// S3 Object Lock's rules. Locking is a fake of a bucket with Object Lock on
// an injected clock, for tests of what uses locks. Each suite is run the same way
// against every implementation; a new store passes them before anything
// else uses it.
package storetest
