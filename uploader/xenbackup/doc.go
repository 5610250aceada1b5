// Package xenbackup owns a night of XenServer VM backups: it picks the VMs
// of a pool, turns changed block tracking on for their disks, snapshots
// each VM (named and marked so that Coffer finds its own), records the
// VM's metadata, backs every disk VDI up over NBD into one backup session
// (only the changed blocks when last night's snapshot and CBT log allow,
// the whole disk otherwise, saying why), commits one Coffer snapshot per
// VM, and then leaves in the pool only what the next night needs: the
// snapshot's changed-block log, or after a full read the snapshot itself.
// Each run first cleans up what a crashed run left: snapshots no Coffer
// snapshot names and disks still attached to the control domain.
//
// It talks to the pool through internal/xenapi and reads disks through
// uploader/source's NBD source; it never imports the vault.
package xenbackup
