// Package diskgen writes deterministic test disk images for Coffer's tests,
// demo and benchmark.
//
// An image is a sequence of 1 MiB regions, each of one Kind: zeros (left as a
// hole unless Options.NonSparse), random bytes (incompressible), or text-like
// lines of words sampled from a fixed vocabulary (compresses about 3-4x with
// zstd, like logs and documents, but never repeats itself). The kinds are
// shuffled over the disk by a PRNG seeded from the image seed, so they are
// interleaved rather than in bands. The reference mix is half zeros, a fifth
// random and the rest text.
//
// The same (size, seed, options) always give the same bytes: the layout comes
// from one PCG stream and every region is filled from its own stream derived
// from the seed and the region's index, so regions are generated in parallel
// without changing the output.
//
// Mutate derives "the next night" of an image: a sparse copy in which a
// fraction of the 64 KiB blocks is overwritten and new text is inserted in the
// middle, shifting the tail.
//
// Tree writes a directory tree shaped like a mostly empty system disk
// (configuration files, logs, binaries-like random files with a text string
// table, many small files), from which the benchmark makes a real ext4 image
// with mkfs.ext4 -d; TreeNight plans and stages its next night (logs grow,
// some files are rewritten, added or removed). Both are deterministic from
// their seed.
package diskgen
