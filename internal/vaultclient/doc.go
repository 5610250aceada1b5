// Package vaultclient owns the agent's side of cofferd's HTTP API: Client,
// a Store over one tenant's repository in the vault (TLS setup, request
// signing with the agent credential, the mapping of the vault's error
// codes and statuses to the store sentinels, quota included), enrollment,
// the escrow calls, the seed calls (the signing key; seeds registered,
// listed, read with their manifests and import reports, confirmed; every
// reply checked as outside input), direct downloads (following the vault's
// redirect of a pack read to a presigned store URL with a client that never
// carries the credential, and falling back to the vault), and the
// environment variables that name the credential and the vault's CA and
// turn direct downloads off. The wire contract itself is
// vaultapi's.
package vaultclient
