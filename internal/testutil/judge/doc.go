// Package judge runs the independent tools tests hold Coffer's output
// against (qemu-img, nbdinfo, nbdcopy, nbdkit: Debian packages that
// `make judges` installs), skipping a test when one is missing unless
// COFFER_REQUIRE_JUDGES=1 makes that a failure.
package judge
