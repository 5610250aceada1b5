// Package index owns the mapping from chunk ID to where the chunk is stored
// (pack, offset, length): the index file format written to the store, and the
// compact in-memory index that answers "is this chunk stored already?" during
// a backup and "where is it?" during a restore. The in-memory form is a sorted
// array of fixed 36-byte records plus a small unsorted tail, so a tenant with
// tens of millions of chunks needs hundreds of MiB, not tens of GiB.
package index
