// Package buildinfo owns what a binary knows about its own build: its
// version, the Go toolchain that built it and the commit it came from,
// read from the build information the Go toolchain embeds
// (runtime/debug.ReadBuildInfo). Both commands print it (version).
package buildinfo
