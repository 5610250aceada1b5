// Package parity owns the Reed-Solomon parity of a seed: which files make up
// which data shard (Layout, Plan), the parity files computed from them
// (Encode), whether a set of damaged files can be rebuilt (Check) and
// rebuilding them (Repair). It reads and writes through functions the caller
// hands it and knows nothing of manifests, hashes or names.
//
// # The code
//
// Byte columns of a Reed-Solomon code are independent, so a data shard need
// not exist anywhere: it is a virtual concatenation of whole files, each at
// an offset that is a multiple of 64 inside its shard, zero beyond them up to
// ShardSize (the longest shard, rounded up to a multiple of 64). Each of the
// ParityShards parity shards is one parity file of ShardSize bytes. The code
// is klauspost/reedsolomon's: its Vandermonde code over GF(2^8) up to 256
// shards in all (CodeGF8), its leopard code over GF(2^16) above (CodeGF16).
// Leopard works on 64-byte blocks (32 16-bit symbols), so this package treats
// every 64-byte block of a shard as one unit, known or unknown, for both codes.
//
// # What the parity buys
//
// A damaged data file (missing, truncated, any byte wrong: the caller knows
// which by hash) makes only its own blocks of its own shard unknown; a
// damaged parity file makes its whole shard unknown. Files never straddle a
// block with another file, so in any block each damaged file makes at most
// one shard unknown: ANY ParityShards damaged files, data or parity, of any
// sizes, can be rebuilt. More damaged files can still be rebuilt when they do
// not share blocks in too many shards; Check decides exactly, from the
// layout alone.
//
// Plan picks ParityShards as the smallest M with M >= share*(N+M) for N data
// files: "any share of all the seed's files, parity files included". It gives
// each file its own shard while the code allows (up to 65536 shards in all;
// leopard also needs DataShards + M rounded up to a power of two <= 65536),
// which costs the least parity bytes: M times the largest file. Above that it
// spreads the files over fewer shards, largest first onto the emptiest shard,
// so the shards come out nearly equal: the guarantee is unchanged, but each
// parity file grows to the longest shard.
//
// # Input and output
//
// Encode and Repair go through the shards in column windows: each window
// holds MemoryBudget/(DataShards+ParityShards) bytes of every shard (at least
// 64). For each window every data file overlapping it is read (a few files
// at once), so with many shards the windows get small and the reads many; a
// caller with many files gives a larger budget. The open and write functions
// are called for each window that needs the file, and what they return is
// closed after that window when it is an io.Closer, so at most Readers files
// are open at once; a caller that keeps its files open returns a ReaderAt
// without Close. Repair never opens a damaged file.
//
// A Layout comes back from a seed's manifest, which is outside input:
// Validate rejects any layout that does not fit the files, before anything
// is allocated from its numbers.
package parity
