package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/testutil/miniotest"
	"github.com/cofferhq/coffer/internal/testutil/netnstest"
)

// The distributed test's hosts: four MinIO nodes and two cofferd replicas,
// all on the lo of a namespace the test makes (see netnstest).
var (
	dmMinIOHosts = []netip.Addr{
		netip.MustParseAddr("10.213.0.1"), netip.MustParseAddr("10.213.0.2"),
		netip.MustParseAddr("10.213.0.3"), netip.MustParseAddr("10.213.0.4"),
	}
	dmReplicaHosts = []netip.Addr{netip.MustParseAddr("10.213.0.5"), netip.MustParseAddr("10.213.0.6")}
)

const (
	dmImageSize   = 96 << 20
	dmAttempts    = 3                // a backup may fail this often before the test fails
	dmKillAtBytes = 24 << 20         // kill a node once the repositories hold this much
	dmKillAfter   = 40 * time.Second // … or after this long, whichever comes first
	dmKilledNode  = 3                // index of the node that is killed (10.213.0.4)
	dmBucket      = "coffer"
	dmHang        = 15 * time.Second // how long a SIGSTOPped node hangs
)

// dmCluster is the running setup: the namespace, MinIO, two replicas.
type dmCluster struct {
	t        *testing.T
	ns       *netnstest.NS
	tool     string
	minio    *netnstest.MinIO
	replicas []*netnstest.Proc
	urls     []string // the replicas' agent URLs
	caFile   string
}

// storeURL is cofferd's store through MinIO node i.
func (c *dmCluster) storeURL(i int) string {
	return "s3://" + c.minio.Endpoints[i] + "/" + dmBucket + "?tls=false"
}

// run runs a program inside the namespace with the S3 keys in its
// environment and returns its output.
func (c *dmCluster) run(ctx context.Context, env []string, name string, args ...string) (stdout, stderr string, err error) {
	cmd := c.ns.Command(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), c.minio.Env()...), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// admin runs a cofferd tenant command on the store (through node 0) and
// fails the test unless it exits 0.
func (c *dmCluster) admin(args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, errOut, err := c.run(ctx, nil, cofferdBin, append([]string{"--store", c.storeURL(0)}, args...)...)
	if err != nil {
		c.t.Fatalf("cofferd %v: %v\n%s%s", args, err, out, errOut)
	}
	return out
}

// listed adds up the sizes of the objects under prefix, as MinIO lists them.
func (c *dmCluster) listed(ctx context.Context, prefix string) (n int64, objects int, err error) {
	out, errOut, err := c.run(ctx, nil, c.tool, "ls", c.minio.Endpoints[0], dmBucket, prefix)
	if err != nil {
		return 0, 0, fmt.Errorf("listing %s: %v: %s", prefix, err, errOut)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		size, _, ok := strings.Cut(sc.Text(), " ")
		v, err := strconv.ParseInt(size, 10, 64)
		if !ok || err != nil {
			return 0, 0, fmt.Errorf("listing %s: bad line %q", prefix, sc.Text())
		}
		n += v
		objects++
	}
	return n, objects, nil
}

// probe runs nstool get URL inside the namespace.
func (c *dmCluster) probe(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, errOut, err := c.run(ctx, nil, c.tool, "get", url)
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(errOut))
	}
	return nil
}

// startReplica runs cofferd serve on host:8443 (TLS with the test CA),
// metrics and /healthz on host:9464, over MinIO node node.
func (c *dmCluster) startReplica(i int, host netip.Addr, node int, certFile, keyFile string) {
	c.t.Helper()
	listen := netip.AddrPortFrom(host, 8443).String()
	metrics := netip.AddrPortFrom(host, 9464).String()
	cmd := c.ns.Command(context.Background(), cofferdBin, "--store", c.storeURL(node), "serve", "--init",
		"--listen", listen, "--metrics-listen", metrics, "--tls-cert", certFile, "--tls-key", keyFile,
		"--shutdown-timeout", "5s")
	cmd.Env = append(os.Environ(), c.minio.Env()...)
	p := c.ns.Start(fmt.Sprintf("cofferd%d", i+1), cmd)
	c.replicas = append(c.replicas, p)
	c.urls = append(c.urls, "https://"+listen)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.probe("http://" + metrics + "/healthz")
		if err == nil {
			return
		}
		if p.Exited() || time.Now().After(deadline) {
			c.t.Fatalf("cofferd replica %d did not become healthy: %v\n%s", i+1, err, p.Log(3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// run runs the agent inside the namespace.
func (a *agent) runIn(ns *netnstest.NS, ctx context.Context, args ...string) result {
	c := a.cmd(ctx, args...)
	cmd := ns.Command(ctx, c.Path, c.Args[1:]...)
	cmd.Env = c.Env
	r, err := runCmd(cmd)
	if err != nil {
		r.code = -1
		r.stderr += err.Error()
	}
	return r
}

// dmJob is one backup: an agent of a tenant backs up its own image through
// one replica, and it is restored through the other.
type dmJob struct {
	tenant  string
	agent   *agent
	replica int
	image   string
	name    string

	attempts int
	failures []string // stderr of the failed attempts
	took     time.Duration
	err      string // set when no attempt succeeded
}

// TestVaultDistributed runs two cofferd replicas on a four-node MinIO and
// drives four backups of two tenants through both replicas at once; in the
// middle of them one MinIO node is SIGKILLed. Every backup must complete
// (or fail with a clear error and complete when run again), every snapshot
// must restore byte-identical through the other replica, and the usage the
// vault reports must be exactly what MinIO lists for each tenant.
func TestVaultDistributed(t *testing.T) {
	if testing.Short() {
		t.Skip("the scale-out test starts a four-node MinIO and two replicas; not in -short")
	}
	// SIGKILL: the node dies and its connections are reset at once; it
	// stays down to the end. SIGSTOP: the node hangs with its sockets open
	// for dmHang, then resumes (SIGCONT). A node that hangs for good stalls
	// this MinIO for minutes (its peers drop it only after about 4 minutes
	// without a pong), which no test here can wait out.
	for _, sig := range []string{"SIGKILL", "SIGSTOP"} {
		t.Run(sig, func(t *testing.T) { testVaultDistributed(t, sig) })
	}
}

func testVaultDistributed(t *testing.T, sig string) {
	t0 := time.Now()
	ns := netnstest.New(t, append(append([]netip.Addr{}, dmMinIOHosts...), dmReplicaHosts...)...)
	c := &dmCluster{t: t, ns: ns, tool: netnstest.BuildTool(t)}
	c.minio = netnstest.StartMinIO(t, ns, miniotest.BinaryPath(), dmMinIOHosts)

	// The agents' images, made while MinIO starts.
	dir := t.TempDir()
	images := make([]string, 4)
	for i := range images {
		images[i] = filepath.Join(dir, fmt.Sprintf("disk%d.img", i))
		if err := diskgen.Generate(images[i], dmImageSize, uint64(100+i), diskgen.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	c.minio.WaitHealthy(t, 60*time.Second, c.probe)
	tMinIO := time.Since(t0)

	certFile, keyFile, caFile := dmTLS(t, dmReplicaHosts)
	c.caFile = caFile
	// The vault first (only an explicit command creates one), then the
	// tenants: this makes the bucket before two replicas race to.
	c.admin("init")
	_, acmeToken := dmCreateTenant(c, "acme")
	_, globexToken := dmCreateTenant(c, "globex")
	c.startReplica(0, dmReplicaHosts[0], 0, certFile, keyFile)
	c.startReplica(1, dmReplicaHosts[1], 1, certFile, keyFile)
	tUp := time.Since(t0)

	// One agent per tenant, enrolled through different replicas. A second
	// agent cannot join a tenant's repository yet, so each agent backs up
	// two disks, one through each replica, at the same time.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	acme, globex := enrolledAgent(t, acmeToken), enrolledAgent(t, globexToken)
	for i, a := range []*agent{acme, globex} {
		if r := a.runIn(ns, ctx, "init", "--repo", c.urls[i], "--vault-ca", caFile); r.code != 0 {
			t.Fatalf("coffer init through replica %d exited %d:\n%s%s", i+1, r.code, r.stdout, r.stderr)
		}
		a.env = nil
	}
	jobs := []*dmJob{
		{tenant: "acme", agent: acme, replica: 0, image: images[0], name: "acme-vm1"},
		{tenant: "acme", agent: acme, replica: 1, image: images[1], name: "acme-vm2"},
		{tenant: "globex", agent: globex, replica: 1, image: images[2], name: "globex-vm1"},
		{tenant: "globex", agent: globex, replica: 0, image: images[3], name: "globex-vm2"},
	}

	tBackup := time.Now()
	var wg sync.WaitGroup
	running := make(chan struct{}, len(jobs))
	for _, j := range jobs {
		wg.Add(1)
		running <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-running }()
			start := time.Now()
			for j.attempts < dmAttempts {
				j.attempts++
				r := j.agent.runIn(ns, ctx, "--json", "backup", "--image", j.image, "--name", j.name, "--repo", c.urls[j.replica])
				if r.code == 0 {
					j.took = time.Since(start)
					return
				}
				j.failures = append(j.failures, fmt.Sprintf("exit %d: %s", r.code, strings.TrimSpace(r.stderr)))
				if ctx.Err() != nil {
					break
				}
				time.Sleep(time.Second)
			}
			j.err = fmt.Sprintf("%d attempts failed", j.attempts)
		}()
	}

	// Kill a node once the backups are well under way.
	var killedAt time.Duration
	var storedAtKill int64
	for {
		n, _, err := c.listed(ctx, "repos/")
		if err != nil {
			t.Logf("while waiting to kill a node: %v", err)
		}
		if n >= dmKillAtBytes || time.Since(tBackup) > dmKillAfter || len(running) == 0 {
			storedAtKill = n
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	inFlight := len(running)
	victim := c.minio.Nodes[dmKilledNode]
	if sig == "SIGKILL" {
		if err := victim.Kill(); err != nil {
			t.Fatalf("killing %s: %v", victim.Name, err)
		}
	} else {
		if err := victim.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("stopping %s: %v", victim.Name, err)
		}
		time.AfterFunc(dmHang, func() {
			_ = victim.Signal(syscall.SIGCONT)
		})
	}
	killedAt = time.Since(tBackup)
	t.Logf("%s %s (%s) %.1fs into the backups, with %d MiB stored and %d of %d backups in flight",
		sig, victim.Name, c.minio.Endpoints[dmKilledNode], killedAt.Seconds(), storedAtKill>>20, inFlight, len(jobs))
	if inFlight == 0 {
		t.Errorf("every backup had finished before the node was killed: the test proved nothing (make the images larger)")
	}
	wg.Wait()
	tBackups := time.Since(tBackup)
	for _, j := range jobs {
		for i, f := range j.failures {
			t.Logf("%s through replica %d, attempt %d failed: %s", j.name, j.replica+1, i+1, f)
			if !strings.Contains(f, "coffer:") || strings.Contains(f, "panic") || strings.Contains(f, "goroutine ") {
				t.Errorf("%s: a failed backup did not end with a clear error:\n%s", j.name, f)
			}
		}
		if j.err != "" {
			t.Errorf("backup %s through replica %d never completed: %s", j.name, j.replica+1, j.err)
		} else {
			t.Logf("backup %s through replica %d: %.1fs, %d attempt(s)", j.name, j.replica+1, j.took.Seconds(), j.attempts)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Restore every snapshot through the other replica, with the node still
	// down, and compare.
	tRestore := time.Now()
	errs := make([]string, len(jobs))
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := filepath.Join(dir, j.name+".restored")
			r := j.agent.runIn(ns, ctx, "restore", "latest", "--name", j.name, "--to", out, "--repo", c.urls[1-j.replica])
			if r.code != 0 {
				errs[i] = fmt.Sprintf("restore of %s through replica %d exited %d:\n%s%s", j.name, 2-j.replica, r.code, r.stdout, r.stderr)
			}
		}()
	}
	wg.Wait()
	for i, j := range jobs {
		if errs[i] != "" {
			t.Error(errs[i])
			continue
		}
		sameFile(t, j.image, filepath.Join(dir, j.name+".restored"))
		_ = os.Remove(filepath.Join(dir, j.name+".restored"))
	}
	tRestores := time.Since(tRestore)

	// Usage is exact: what the vault reports is what MinIO holds.
	for _, name := range []string{"acme", "globex"} {
		id, stored, snaps := dmUsage(c, name)
		held, objects, err := c.listed(ctx, "repos/"+id+"/")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("tenant %s: usage %d bytes, %d snapshots; MinIO lists %d bytes in %d objects", name, stored, snaps, held, objects)
		if stored != held || snaps != 2 {
			t.Errorf("tenant %s: the vault reports %d bytes and %d snapshots; MinIO holds %d bytes, and 2 snapshots were made",
				name, stored, snaps, held)
		}
	}
	if total, _, err := c.listed(ctx, "repos/"); err != nil {
		t.Fatal(err)
	} else if total <= storedAtKill {
		t.Errorf("nothing was stored after %s hit the node (%d bytes before, %d after)", sig, storedAtKill, total)
	} else {
		t.Logf("%d MiB of the %d MiB stored were written after the %s", (total-storedAtKill)>>20, total>>20, sig)
	}
	for i, p := range c.replicas {
		if p.Exited() {
			t.Errorf("cofferd replica %d exited during the test:\n%s", i+1, p.Log(3000))
		}
		t.Logf("cofferd replica %d answered %d requests with a 5xx status", i+1, dmCount5xx(p.LogPath))
	}
	t.Logf("timings: MinIO healthy %.1fs, replicas up %.1fs, 4 backups %.1fs (node killed at %.1fs), 4 restores %.1fs, total %.1fs",
		tMinIO.Seconds(), tUp.Seconds(), tBackups.Seconds(), killedAt.Seconds(), tRestores.Seconds(), time.Since(t0).Seconds())
}

func dmCreateTenant(c *dmCluster, name string) (id, token string) {
	c.t.Helper()
	var created struct {
		Tenant struct {
			ID string `json:"id"`
		} `json:"tenant"`
		Token string `json:"token"`
	}
	out := c.admin("--json", "tenant", "create", name, "--quota", "none")
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.Token == "" || created.Tenant.ID == "" {
		c.t.Fatalf("tenant create printed %q (%v)", out, err)
	}
	return created.Tenant.ID, created.Token
}

func dmUsage(c *dmCluster, name string) (id string, stored, snapshots int64) {
	c.t.Helper()
	var info struct {
		ID    string `json:"id"`
		Usage struct {
			StoredBytes int64 `json:"stored_bytes"`
			Snapshots   int64 `json:"snapshots"`
		} `json:"usage"`
	}
	out := c.admin("--json", "tenant", "show", name)
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.ID == "" {
		c.t.Fatalf("tenant show printed %q: %v", out, err)
	}
	return info.ID, info.Usage.StoredBytes, info.Usage.Snapshots
}

// dmCount5xx counts the access-log lines of a cofferd log with a 5xx status.
func dmCount5xx(logPath string) int {
	f, err := os.Open(logPath)
	if err != nil {
		return -1
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Status int `json:"status"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Status >= 500 {
			n++
		}
	}
	return n
}

// dmTLS writes a throw-away CA and a server certificate for the replicas'
// addresses, and returns the certificate, key and CA files.
func dmTLS(t *testing.T, hosts []netip.Addr) (certFile, keyFile, caFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "coffer test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "cofferd"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(h.AsSlice()))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("cert.pem", "CERTIFICATE", der), write("key.pem", "PRIVATE KEY", keyDER), write("ca.pem", "CERTIFICATE", caDER)
}
