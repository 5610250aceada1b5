// Package vaultapi is the wire contract between cofferd (the vault) and the
// agent's vault client: routes, headers, error codes and the JSON error
// body, the object-name grammar of a tenant's repository, the formats of
// enrollment tokens and agent credentials, and the JSON types of the
// requests and replies. Both sides import it, so they cannot drift apart.
//
// Secrets (tokens, credentials) travel only as Secret, which never prints:
// fmt, slog and encoding/json all see "[REDACTED]". Code that must send a
// secret calls Reveal explicitly.
package vaultapi
