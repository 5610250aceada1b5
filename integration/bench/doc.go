// Command bench measures Coffer side by side with restic and kopia at the
// versions of peers.env (the peers of PRODUCT.md "Numbers to beat") on the same
// generated disk images, to a local repository and to one MinIO on loopback,
// and Coffer alone through its vault (cofferd serve on loopback over MinIO).
//
//	go run ./integration/bench [--quick] [--size 4GiB] [--workdir DIR] [--keep]
//	    [--tools coffer,restic,kopia | --peers restic,kopia] [--targets local,s3,vault]
//	    [--scenarios mix,ext4,xen] [--ext4-size 4GiB] [--ext4-data 320MiB] [--xen-size 16GiB]
//
// It generates night 1 (the reference mix: 1 MiB regions, half holes, a fifth
// random, the rest text-like) and night 2 (1% of the 64 KiB blocks rewritten
// and size/128 bytes, 32 MiB on 4 GiB, inserted in the middle), then for each
// target and tool: creates a repository (not timed), backs up night 1, backs
// up night 2 from the same path (so every tool sees the next night of the
// same file), restores night 2 to a fresh file and compares it with night 2.
//
// The ext4 scenario (ext4.go) does the same on a real VM disk: a 4 GiB ext4
// image that mkfs.ext4 -d fills from a generated system tree of 320 MiB
// (diskgen.Tree), and its next night, in which debugfs grows the logs,
// rewrites some files, adds and removes others. No loop device or mount is
// needed. Each scenario has its own repositories; its restore ratio against
// restic is checked on its own.
//
// The xen scenario (xen.go) runs once, after the others, into local
// repositories only: a VM of a simulated XenServer pool (cmd/xapisim, built
// like coffer, served on loopback) with one 16 GiB disk of the reference mix
// (--xen-size; 2 GiB with --quick). Coffer backs the VM up over NBD: night 1
// reads the whole disk; then the guest writes 1% of the 64 KiB blocks
// (--changed); night 2 reads only the blocks changed block tracking
// reports; night 3 (--full-read) reads the whole disk again ("Coffer's full
// read"); night 4, with nothing changed, is the fixed cost of a run. restic
// backs up the disk exported after night 1 (not measured) and after the
// guest's writes (its second night, which reads the whole image). The latest
// snapshot is restored and compared with the night-2 export. The checks: the
// CBT night at least 20x restic's second night (disk size / wall time) and
// reading at most 1.5% of the disk; the simulator's CPU is reported apart.
// Then night 5, a CBT night like night 2, runs with coffer's --cpu-profile
// (WORKDIR/logs/xen-cbt.pprof), after the measured steps.
//
// Start-up cost (startup.go): in the first scenario, after its second
// night, each session runs `snapshots` (no data), a backup of a new 1 MiB
// image and its restore, 3 times each (--startup-runs), with the session's
// own configuration as a user would; the median wall and CPU time of each
// command is reported as rows of their own, with the wall time against
// restic's.
//
// Each step is one child process, measured by wall time, CPU time (user+sys
// from its rusage), peak RSS (ru_maxrss) and, for backups, the bytes the
// repository holds afterwards (file sizes under the directory, or object
// sizes under the tool's prefix in the bucket). MB/s is the image's logical
// size in 10^6 bytes over the wall time.
//
// Caches: before every measured step the bench flushes dirty pages, drops
// the page cache (when it runs as root; otherwise it says so and results are
// noisier), and reads the step's input once: the image before a backup, the
// repository (or MinIO's data directory) before a restore. Every tool thus
// starts with its input cached and with free memory to write into, whatever
// ran before it. Kopia's automatic maintenance is turned off, as restic runs
// none on its own. MinIO's CPU time during each step is reported apart.
//
// The vault target runs coffer only (restic and kopia cannot talk to the
// vault), compares its throughput with coffer's own on the s3 target, and
// records cofferd's CPU and peak RSS; then 16 vault clients of 4 tenants
// put fresh 16 MiB packs, 16 in flight, while cofferd's RSS is sampled
// (see vault.go).
//
// Results go to stdout as tables, ratios and PASS/FAIL against the targets,
// and to WORKDIR/bench.json. Without --keep the images, repositories and
// MinIO data are deleted at the end; bench.json and the logs stay.
package main
