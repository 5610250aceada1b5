// Package buildinfo owns the version of the running binary: the one place
// that answers "which build is this" for metrics, logs and version
// commands. A release build sets it at link time with
//
//	-ldflags "-X github.com/cofferhq/coffer/internal/buildinfo.version=v1.2.3"
//
// Without it, Version falls back to what the Go toolchain recorded in the
// binary (the module version of a `go install module@version`, or the VCS
// revision of a build from a checkout).
package buildinfo
