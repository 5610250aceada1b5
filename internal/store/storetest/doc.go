// Package storetest owns the conformance suite for store.Store: the
// behaviour the repository layer relies on (create-only atomic Put, exact
// ranged Get, prefix List, idempotent Delete, name validation, sentinel
// errors), checked the same way against every implementation. A new store
// passes Run before anything else uses it.
package storetest
