// Package maint owns the vault's maintenance decisions as pure functions,
// with no store, no clock and no I/O, so the jobs (vault/jobs), their dry
// runs and the tests all get the same answer from the same input:
//
//   - retention: which snapshots a GFS policy keeps and why, per group (a
//     VM) (Policy, Policies, Apply);
//   - garbage collection over receipts: which packs are marked, taken back
//     by a new receipt, condemned after the grace unless a live upload
//     session began before the mark, and remembered as deleted (GCState,
//     Plan, Claim).
//
// # How a policy decides
//
// Each group (Item.Group, the VM's name) is decided on its own. Its items are
// sorted newest first (ties: by ID). Then every rule looks at them in that
// order, independently of the others, and an item is kept when at least one
// rule keeps it; its Decision lists every rule that did (the reasons):
//
//   - Last N keeps the N newest items ("last 1" is the newest).
//   - Within D keeps every item at most D older than the group's newest item
//     (not than now: a VM that stopped backing up keeps its history).
//   - Hourly, Daily, Weekly, Monthly and Yearly N put each item in a calendar
//     bucket of the given time.Location and keep the newest item of each of
//     the N newest buckets that hold an item. Empty buckets (missed nights)
//     do not count. Buckets are: the wall-clock hour with its UTC offset (so
//     the hour repeated when daylight saving time ends is two buckets), the
//     local date, the ISO 8601 week (Monday to Sunday; a week belongs to the
//     year of its Thursday, so 2027-01-01 is in 2026-W53), the month and the
//     year.
//
// The rules overlap as restic's `forget --keep-*` do: the newest item of a
// day that is also the newest of its week counts against both Daily and
// Weekly. Proxmox Backup Server instead lets an item kept by an earlier rule
// cover its bucket for the later ones, which reaches further back with the
// same numbers; Coffer takes restic's reading because each rule can then be
// read on its own ("the newest of each of the last 8 ISO weeks"). Unlike
// restic, Coffer does not keep the oldest item when a rule finds fewer
// buckets than it may keep.
//
// A policy that keeps nothing (all zero) is refused by Validate, and Apply
// given one keeps everything: an empty policy never deletes a snapshot.
// Keeping the items Apply keeps and applying the same policy again keeps all
// of them; removing any one item Apply dropped changes no other decision, so
// pruning every night and pruning once a year keep the same snapshots.
package maint
