// Package repofixture owns building repositories by hand, for tests: it
// stores chunks, region maps, map lists, packs, index files and snapshots
// with the repo, pack, index and manifest APIs only, so that check and
// restore are tested independently of the backup pipeline (uploader), and a
// test can damage or edit any object a backup would have written.
//
// Key slots made by a test binary should use the test-only KDF: call
// UseInsecureKDF from the test package's init or TestMain. This package
// never sets it by itself.
package repofixture
