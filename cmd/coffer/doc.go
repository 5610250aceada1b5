// Package main is the coffer command line: one file per command, each
// parsing its flags and calling into uploader/ and internal/. Exit codes are
// mapped from error kinds in exit.go and documented in README.md.
package main
