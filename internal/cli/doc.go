// Package cli owns what the coffer and cofferd commands share about ending:
// the exit codes both document and the mapping of the errors common to both
// (success, interruption, misuse). Each command adds its own codes on top.
package cli
