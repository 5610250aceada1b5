// Package store owns "bytes under a name": the narrow interface every place a
// repository can live implements (a local directory, an S3 bucket, and later
// the vault), the sentinel errors providers translate their failures into, and
// the decorators that wrap a store (retry with backoff, fault injection for
// tests). Stores know nothing about what the bytes mean.
package store
