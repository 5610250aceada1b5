package store

// DirectBytes reports how many bytes the local store has written with direct I/O.
func DirectBytes() int64 { return directBytes.Load() }
