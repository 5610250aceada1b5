// Package seed owns the seed directory: the full backup a tenant ships on a
// portable disk (see FORMAT.md, "Seeds"). It holds the manifest (every file
// with its size and SHA-256, signed with the tenant's signing key), its
// parser, the layout of the directory, and the checks and repairs from
// Reed-Solomon parity (internal/parity) that an import runs before it
// uploads anything. The export that writes a seed (the agent) and the
// import that reads one (the vault) both use it; neither is here.
package seed
