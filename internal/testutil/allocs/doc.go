// Package allocs measures how many bytes a function allocates, for tests
// that prove a decoder does not allocate what a hostile count asks for.
package allocs
