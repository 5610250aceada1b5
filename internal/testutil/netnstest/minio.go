package netnstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// MinIO is a distributed MinIO inside a namespace: one server process per
// host, one erasure set over one folder each.
type MinIO struct {
	Nodes     []*Proc
	Endpoints []string // "10.213.0.1:9001", one per node, in order
	AccessKey string
	SecretKey string
}

// StartMinIO starts one MinIO server per address in ns, node i listening
// on addrs[i]:9001+i with its drive in a temporary folder, all of them one
// erasure set (the endpoints are listed one by one: the {1...n} shorthand
// over both hosts and folders would make n×n drives). MINIO_CI_CD=1 lets
// MinIO use folders on the root disk. Call WaitHealthy before using it.
func StartMinIO(tb testing.TB, ns *NS, bin string, addrs []netip.Addr) *MinIO {
	tb.Helper()
	if st, err := os.Stat(bin); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		skipOrFail(tb, fmt.Sprintf("netnstest: MinIO binary %s is missing or not executable: run `make minio` or set COFFER_MINIO_BIN", bin))
	}
	root := tb.TempDir()
	m := &MinIO{AccessKey: "coffer-" + randHex(4), SecretKey: randHex(16)}
	var eps []string
	for i, a := range addrs {
		hp := netip.AddrPortFrom(a, uint16(9001+i)).String()
		m.Endpoints = append(m.Endpoints, hp)
		eps = append(eps, fmt.Sprintf("http://%s%s/d%d", hp, root, i+1))
		if err := os.MkdirAll(filepath.Join(root, fmt.Sprintf("d%d", i+1)), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range addrs {
		args := append([]string{"server", "--quiet", "--address", m.Endpoints[i]}, eps...)
		cmd := ns.Command(context.Background(), bin, args...)
		cmd.Env = append(os.Environ(), "MINIO_CI_CD=1", "MINIO_ROOT_USER="+m.AccessKey, "MINIO_ROOT_PASSWORD="+m.SecretKey,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off")
		m.Nodes = append(m.Nodes, ns.Start(fmt.Sprintf("minio%d", i+1), cmd))
	}
	return m
}

// ClusterHealthURL is node i's cluster health endpoint: 200 when the erasure
// set has write quorum.
func (m *MinIO) ClusterHealthURL(i int) string {
	return "http://" + m.Endpoints[i] + "/minio/health/cluster"
}

// Env is the S3 credentials as environment entries for clients.
func (m *MinIO) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + m.AccessKey, "AWS_SECRET_ACCESS_KEY=" + m.SecretKey}
}

// WaitHealthy waits until probe (run inside the namespace, e.g. nstool's
// get) reports every node's cluster health URL healthy, failing the test
// after timeout or when a node exits. Every node, not one: a node answers
// "not initialized yet" until its own object layer is up, although its
// peers already report quorum.
func (m *MinIO) WaitHealthy(tb testing.TB, timeout time.Duration, probe func(url string) error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var err error
		for i := range m.Endpoints {
			if err = probe(m.ClusterHealthURL(i)); err != nil {
				break
			}
		}
		if err == nil {
			return
		}
		for _, n := range m.Nodes {
			if n.Exited() {
				tb.Fatalf("MinIO node %s exited while starting:\n%s", n.Name, n.Log(2000))
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the distributed MinIO did not become healthy in %s: %v", timeout, strings.TrimSpace(err.Error()))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
