// Package miniotest owns the MinIO test harness: it finds the MinIO binary
// that `make minio` installs, starts a throwaway server on loopback with
// random credentials and a temporary data directory, and hands out fresh
// buckets as repository URLs that storeurl accepts. Without the binary the
// S3 tests skip, or fail when CI=true.
package miniotest
