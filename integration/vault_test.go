package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
)

// vault is one cofferd serving on loopback, over a store the test chose.
type vault struct {
	t        *testing.T
	storeURL string
	url      string // what agents pass as --repo
	metrics  string // host:port of /metrics
	log      *bytes.Buffer
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// startVault runs `cofferd serve` on storeURL until the test ends.
func startVault(t *testing.T, storeURL string) *vault {
	t.Helper()
	return startVaultArgs(t, storeURL)
}

// startVaultArgs is startVault with more arguments: global flags, then
// serve's.
func startVaultArgs(t *testing.T, storeURL string, extra ...string) *vault {
	t.Helper()
	v := &vault{t: t, storeURL: storeURL, log: &bytes.Buffer{}}
	addr := freeAddr(t)
	v.url, v.metrics = "http://"+addr, freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	args := []string{"--store", storeURL, "serve", "--init", "--listen", addr, "--metrics-listen", v.metrics}
	cmd := exec.CommandContext(ctx, cofferdBin, append(args, extra...)...)
	cmd.Stdout, cmd.Stderr = v.log, v.log
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("cofferd log:\n%s", v.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(v.url + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return v
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("cofferd did not become healthy on %s: %v\n%s", addr, err, v.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metric sums a counter's series on the vault's /metrics.
func (v *vault) metric(name string) float64 {
	v.t.Helper()
	resp, err := http.Get("http://" + v.metrics + "/metrics")
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		v.t.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name+"{"); ok {
			f := strings.Fields(rest)
			n, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				v.t.Fatalf("metric line %q: %v", line, err)
			}
			sum += n
		}
	}
	return sum
}

// admin runs a cofferd command on the vault's store and returns its
// output; it fails the test unless the command exits 0.
func (v *vault) admin(args ...string) string {
	v.t.Helper()
	cmd := exec.Command(cofferdBin, append([]string{"--store", v.storeURL}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		v.t.Fatalf("cofferd %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errb.String())
	}
	return out.String()
}

// createTenant makes a tenant and returns its ID and enrollment token.
func (v *vault) createTenant(name, quota string) (id, token string) {
	v.t.Helper()
	return v.token("tenant", "create", name, "--quota", quota)
}

// newToken makes another enrollment token for a tenant's next agent.
func (v *vault) newToken(name string) string {
	v.t.Helper()
	_, token := v.token("tenant", "token", name)
	return token
}

// token runs a cofferd command that prints an enrollment token (--json).
func (v *vault) token(args ...string) (tenantID, token string) {
	v.t.Helper()
	var out struct {
		Tenant struct {
			ID string `json:"id"`
		} `json:"tenant"`
		Token string `json:"token"`
	}
	printed := v.admin(append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(printed), &out); err != nil || out.Token == "" || out.Tenant.ID == "" {
		v.t.Fatalf("cofferd %v printed %q (%v)", args, printed, err)
	}
	return out.Tenant.ID, out.Token
}

// tenantUsage is what `cofferd tenant show --json` reports of a tenant's usage.
type tenantUsage struct {
	StoredBytes int64 `json:"stored_bytes"`
	Snapshots   int64 `json:"snapshots"`
	Reported    struct {
		LogicalBytes int64 `json:"logical_bytes"`
	} `json:"reported_by_agents"`
}

// usage is a tenant's usage as `cofferd tenant show --json` reports it.
func (v *vault) usage(name string) (stored, snapshots int64) {
	u := v.fullUsage(name)
	return u.StoredBytes, u.Snapshots
}

func (v *vault) fullUsage(name string) tenantUsage {
	v.t.Helper()
	var info struct {
		Usage tenantUsage `json:"usage"`
	}
	out := v.admin("--json", "tenant", "show", name)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		v.t.Fatalf("tenant show printed %q: %v", out, err)
	}
	return info.Usage
}

// enrolledAgent is a new agent holding a tenant's enrollment token.
func enrolledAgent(t *testing.T, token string) *agent {
	a := newAgent(t)
	a.env = []string{"COFFER_ENROLL_TOKEN=" + token}
	return a
}

// TestVaultRoundTrip runs the main job through a vault on a local
// directory and through one on MinIO, the latter with direct downloads:
// enroll, two nights, restores byte-identical (on MinIO, read from the
// store by presigned URL), check --read-data.
func TestVaultRoundTrip(t *testing.T) {
	for _, backend := range []string{"local", "s3"} {
		t.Run(backend, func(t *testing.T) {
			storeURL := "file://" + filepath.Join(t.TempDir(), "vault")
			var extra []string
			if backend == "s3" {
				minio.Require(t)
				storeURL = minio.NewBucket(t)
				extra = []string{"--direct-downloads"}
			}
			v := startVaultArgs(t, storeURL, extra...)
			_, token := v.createTenant("acme", "none")
			a := enrolledAgent(t, token)
			roundTrip(t, a, v.url)
			if backend == "s3" {
				if n := v.metric("cofferd_tenant_direct_downloads_total"); n == 0 {
					t.Error("no restore read came from the store directly")
				}
			}
			// Two nights of a 256 MiB disk: 512 MiB logical, as the agent
			// reports it, against far fewer bytes stored (the dedup ratio).
			if u := v.fullUsage("acme"); u.StoredBytes <= 0 || u.Snapshots != 2 || u.Reported.LogicalBytes != 2*256<<20 {
				t.Errorf("usage after two nights: %+v; want stored > 0, 2 snapshots, %d logical bytes", u, 2*256<<20)
			}
			if out := v.admin("tenant", "show", "acme"); !strings.Contains(out, "x the stored bytes") {
				t.Errorf("tenant show does not give the dedup ratio:\n%s", out)
			}
			// The token was single use.
			b := enrolledAgent(t, token)
			if r := b.run("init", "--repo", v.url); r.code == 0 {
				t.Errorf("a used enrollment token enrolled a second agent:\n%s", r.stdout)
			}
			if strings.Contains(v.log.String(), token) {
				t.Error("cofferd logged the enrollment token")
			}
		})
	}
}

// TestVaultQuota is the quota story as a new user lives it: a quota below
// usage stops the next backup with a clear message and loses nothing;
// raising it lets the backup finish, and the usage the vault reports is
// exactly the bytes it holds for the tenant.
func TestVaultQuota(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vault")
	v := startVault(t, "file://"+dir)
	tid, token := v.createTenant("acme", "10GiB")
	a := enrolledAgent(t, token)
	a.ok("init", "--repo", v.url)

	n1 := filepath.Join(a.dir, "night1.img")
	n2 := filepath.Join(a.dir, "night2.img")
	if err := diskgen.Generate(n1, 128<<20, 1, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	// A different disk: almost nothing of it deduplicates.
	if err := diskgen.Generate(n2, 128<<20, 7, diskgen.Options{}); err != nil {
		t.Fatal(err)
	}
	a.ok("backup", "--image", n1, "--name", "vm1")
	used, _ := v.usage("acme")
	if held := dirSize(t, filepath.Join(dir, "repos", tid)); used != held {
		t.Fatalf("usage says %d bytes, the vault holds %d for the tenant", used, held)
	}

	v.admin("tenant", "set-quota", "acme", fmt.Sprint(used+1<<20))
	time.Sleep(3 * time.Second) // the vault's tenant cache
	r := a.run("backup", "--image", n2, "--name", "vm2")
	if r.code == 0 {
		t.Fatal("a backup over quota succeeded")
	}
	if msg := r.stderr; !strings.Contains(msg, "quota") || !strings.Contains(msg, "acme") {
		t.Errorf("the refusal does not name the quota and the tenant:\n%s", msg)
	}
	a.ok("check") // nothing already stored was lost

	v.admin("tenant", "set-quota", "acme", "10GiB")
	time.Sleep(3 * time.Second)
	a.ok("backup", "--image", n2, "--name", "vm2")
	out := filepath.Join(a.dir, "out2.img")
	a.ok("restore", "latest", "--name", "vm2", "--to", out)
	sameFile(t, n2, out)
	a.ok("check", "--read-data")

	used, snaps := v.usage("acme")
	if held := dirSize(t, filepath.Join(dir, "repos", tid)); used != held || snaps != 2 {
		t.Errorf("usage says %d bytes and %d snapshots; the vault holds %d bytes, 2 snapshots", used, snaps, held)
	}
}

// dirSize adds up the sizes of the regular files under dir, leaving out
// temporary files.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
