// Package netnstest gives a test its own Linux network namespace, so that
// servers which refuse loopback addresses (a distributed MinIO believes it
// runs in a container here and waits forever for loopback endpoints) can
// listen on ordinary addresses that exist nowhere but inside the test.
//
// It owns: making the namespace (named after the test process's pid) with
// addresses on its lo, running and recording processes inside it with
// `ip netns exec`, stopping them by PID and deleting the namespace in
// t.Cleanup (also when the test fails), a four-node MinIO erasure set
// inside it (StartMinIO), and nstool, a small program built by the test and
// run inside the namespace to probe URLs and list S3 objects, so that the
// test process itself never opens a socket to a namespace address.
//
// Making a namespace needs root and iproute2. Without them New skips the
// test with a clear message, or fails it when CI=true.
package netnstest
