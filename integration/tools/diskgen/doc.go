// Command diskgen writes the deterministic test disk images of
// internal/diskgen for the demo and the benchmark.
//
//	diskgen gen --size 4GiB --seed 1 [--zeros] OUT
//	diskgen sparse --size 4GiB --data 200MiB --seed 1 OUT
//	diskgen mutate --seed 2 [--changed 0.01] [--insert 32MiB] [--zeros] SRC DST
package main
