// Package pack owns the pack file format: sealed blobs laid end to end,
// followed by a sealed header that lists them and an 8-byte trailer. It builds
// packs in memory, parses headers read back from a store, and names a pack by
// the SHA-256 of its bytes. See FORMAT.md, "Packs".
package pack
