// Package fsx owns the few file-system primitives that both the local
// directory store and restore need on Linux: a create-only rename that
// falls back where the file system lacks RENAME_NOREPLACE, and fsync of a
// directory.
package fsx
