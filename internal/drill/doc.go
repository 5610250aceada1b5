// Package drill owns restore drills and their evidence: picking the
// snapshot of a VM to drill (the newest, or a random one), restoring each of
// its disks verify-only or into scratch space and checking it against the
// recorded digests (internal/restore), and the evidence record that proves
// it (Evidence: JSON with stable field names, parsed strictly since the
// vault reads records an agent wrote), with the recovery time achieved
// against the objective, and the table an auditor reads. Where evidence is
// stored is the caller's: cofferd under vault/drills/, the agent in its
// repository under drills/ (FORMAT.md).
package drill
