// Package restore owns getting a disk back out of a repository: it reads a
// snapshot's disk maps, fetches the packs that hold its chunks in parallel
// (each needed pack range once, however many times its chunks repeat), writes
// a sparse output that leaves empty regions as holes, and verifies the result
// block by block against the hashes and the whole-disk digest recorded at
// backup time. Both the agent (coffer restore) and the vault (cofferd restore,
// drills) use it.
package restore
