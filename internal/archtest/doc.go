// Package archtest holds the layering test: it reads every Go file of the
// module and fails when an import runs against the arrows of
// ARCHITECTURE.md (cmd -> product parts -> internal and crypto; product
// parts never import each other), and when product code reads the wall
// clock instead of the injected internal/clock. It has no code of its own
// outside tests; make lint runs it.
package archtest
