// Package seed owns the seed directory: the full backup a tenant ships on a
// portable disk (see FORMAT.md, "Seeds"). It holds the manifest (every file
// with its size and SHA-256, signed with the tenant's signing key), its
// parser, the layout of the directory, and the checks and repairs from
// Reed-Solomon parity (internal/parity) that an import runs before it
// uploads anything, and the two pieces of an export that are about the
// directory: its state (the seed ID drawn once, the backed-up mark) and
// sending its small objects to the vault (SendSmall). The export itself
// (cmd/coffer, coffer seed export) and the import (the vault) use it.
package seed
