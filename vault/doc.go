// Package vault is cofferd's HTTP server: the agent API of the multi-tenant
// vault (objects, listing, enrollment, tenant info, health), the raw request
// path sanitiser in front of it, the connection limits and deadlines of its
// listener (conns.go), per-request authentication with short positive and
// negative caches, per-tenant fairness limits, the SHA-256-verifying streaming upload
// path, direct downloads (direct.go: large pack reads redirected to a
// presigned store URL once every check has passed), Prometheus metrics
// (storemetrics.go counts the data-store requests made for each tenant) and
// one JSON access log line per request.
//
// It owns no state: tenants, credentials and usage live in the store and are
// reached through the small interfaces Authenticator, Enroller, Ledger and
// TenantSource (implemented over vault/registry and vault/ledger by the
// adapters in adapters.go). Tenant objects are stored at
// repos/<tenant id>/<name> in the data store; no request ever names a tenant,
// which comes only from the credential. LockedObject (objectlock.go) is the
// S3 Object Lock policy over that layout: every repository object is locked
// when stored, nothing under vault/ is.
//
// keyslots.go serves the operator, not agents: it describes a tenant's key
// slots from their plaintext fields (it never opens one) and removes one
// (cofferd tenant keys, remove-key), the vault's only deletion in repos/.
package vault
