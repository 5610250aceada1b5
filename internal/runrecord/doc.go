// Package runrecord is the record of one run of the scheduled agent
// (coffer agent): when it was due, started and finished, its result, its
// sanitized error, the bytes it stored and the snapshots it made. It is
// plain JSON with no secrets, stored content-named under runs/ in the
// repository (vaultapi.KindRun), so the vault reads a tenant's run history
// without its keys. The agent writes records (package agent); the vault
// and the agent's --history read them with Parse, which is strict.
package runrecord
