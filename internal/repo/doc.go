// Package repo owns a tenant repository as a whole: its config object and
// format version, its key slots, the naming of every object (config, keys/,
// data/, index/, snapshots/), sealing and opening objects with the repository
// keys, loading the index, and reading single blobs back. It is the one place
// that turns "bytes under a name" into Coffer objects; the backup pipeline,
// restore and check are built on it.
package repo
