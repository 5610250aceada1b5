// Package uploader owns the agent's backup pipeline: it reads a disk (a raw
// image file or a block device) region by region, skips holes and all-zero
// blocks without storing them, hashes every 64 KiB block for the whole-disk
// digest, splits data into content-defined chunks, deduplicates them against
// the repository index, compresses, seals and packs new chunks, uploads the
// packs, and writes the snapshot last. Every core works on its own region, so
// the pipeline keeps all cores busy and its memory is bounded by the number of
// workers and pack buffers, not by the size of the disk.
package uploader
