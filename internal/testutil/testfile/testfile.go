package testfile

import (
	"crypto/sha256"
	"io"
	"os"
	"testing"
)

// SHA256 returns the SHA-256 of the file at path, failing the test on error.
func SHA256(tb testing.TB, path string) [32]byte {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		tb.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}
