// Package diskread owns reading one disk of a snapshot at random: it opens
// the disk's map lists, loads region maps lazily into a small bounded cache,
// and serves ReadAt from chunks fetched on demand, checked against their
// keyed IDs, and kept decrypted in a bounded LRU cache, with readahead for
// sequential readers. It also answers which parts of the disk hold data
// (Extents), which image writers and NBD block status need.
//
// It is the shared reader under instant access (NBD), image-format restores
// (VHD, qcow2, VDI upload), delta restores and drills. It never writes.
package diskread
