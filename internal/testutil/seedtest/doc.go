// Package seedtest owns signed seed manifests for tests: a tenant's
// signing key and a manifest of given packs, signed with it, as an agent's
// export would register them with the vault. It writes no seed directory
// (internal/seed's tests and the export do).
package seedtest
