// Package testfile owns small file helpers the test suites share (a file's
// SHA-256), so each test package does not carry its own copy.
package testfile
