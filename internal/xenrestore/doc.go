// Package xenrestore owns restoring a VM into a XenServer pool: from the
// export_metadata archive a backup recorded and the VM's disks, it creates
// a VDI per disk on an SR, uploads each with import_raw_vdi's sparse
// protocol (only the extents that hold data cross the wire), and then
// recreates the VM and its VBDs with import_metadata, mapping the original
// VDIs to the new ones. The VM is left halted.
//
// It does not know where the disks come from: a Disk is a size, an
// io.ReaderAt and the list of its data extents, so the snapshot-disk
// reader of a repository (or a test's image) plugs in.
//
// Failure. The VM appears in the pool only in the last step, after every
// disk is written, so a pool never holds a VM whose disks are half-made.
// When a step fails, Restore removes everything it created (the VM with
// its VBDs, then the VDIs) before it returns the error; what it could not
// remove is named in the error.
package xenrestore
