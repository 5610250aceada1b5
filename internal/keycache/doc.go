// Package keycache owns the agent's per-repository key file: for each
// repository an agent has opened, the key slot that opened it (tried first
// next time) and, unless turned off, the repository's master key, so that
// later commands skip the passphrase KDF. The files live in the agent's
// config directory, where its vault credential already is, with mode 0600.
// A kept key is only a hint: the repository package verifies it (config
// MAC) before any use, and the caller removes a key that fails.
package keycache
