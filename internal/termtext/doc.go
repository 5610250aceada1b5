// Package termtext makes text that came from outside the program (the
// store, the vault, another machine's snapshot or key slot) safe to print
// on a terminal: control characters, escape sequences, bidirectional
// overrides and invalid UTF-8 become visible escapes, so such text can
// neither move the cursor, recolour, retitle or clear the terminal, nor
// reorder what a user reads. JSON output escapes by itself and needs none
// of this.
package termtext
