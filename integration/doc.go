// Package integration owns the end-to-end tests: they build the real coffer
// binary and run it as a user would, against local directories and a real
// MinIO server started on loopback (internal/testutil/miniotest), including
// corruption, wrong-passphrase and kill -9 crash tests. The benchmark
// (integration/bench) and the disk generator tool (integration/tools) live
// below it.
package integration
