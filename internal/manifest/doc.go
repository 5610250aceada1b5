// Package manifest owns what a snapshot says: the snapshot document (source,
// name, time, tags, disks), the per-region chunk maps of a disk, the lists
// that tie a disk's regions together, and the whole-disk digest built from
// per-block hashes so that a changed-block backup can maintain it without
// reading unchanged regions. See FORMAT.md, "Snapshots" and "Disk maps".
package manifest
