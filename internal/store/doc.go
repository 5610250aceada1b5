// Package store owns "bytes under a name": the narrow interface every place a
// repository can live implements, the sentinel errors providers translate
// their failures into, the optional capabilities found with As (among them
// Locker, S3 Object Lock, with ExtendLocks for batches, and Presigner, a
// URL that reads one object until it expires), the decorators that
// wrap a store (retry with backoff, request counting, request-rate caps,
// Object Lock on put, fault injection for tests), the overlay of one store
// over another (a seed export writes into the seed, reads both), and two
// providers: a local directory and an S3 bucket. The vault's client is internal/vaultclient;
// turning a URL into a store is internal/storeurl. Stores know nothing about
// what the bytes mean.
package store
