package main

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// The vault target: coffer through `cofferd serve` on 127.0.0.1 (plain
// HTTP, as the s3 target has no TLS either) over a bucket of its own on the
// same MinIO. Only coffer speaks the vault's API; restic and kopia are not
// run on this target.

const vaultBucket = "bench-vault"

// vaultServer is one cofferd serving on loopback until Stop.
type vaultServer struct {
	URL      string // what agents pass as --repo
	storeURL string
	bin      string
	env      []string
	logPath  string
	cmd      *exec.Cmd
	done     chan struct{}
}

// VaultInfo describes the vault of the run in bench.json.
type VaultInfo struct {
	URL    string `json:"url"`
	Bucket string `json:"bucket"`
	Log    string `json:"log"`
}

// startVault builds cofferd and serves it on a free loopback port over the
// vault bucket of b.minio, with the default limits.
func (b *bench) startVault(ctx context.Context) (*vaultServer, error) {
	if b.minio == nil {
		return nil, errors.New("no MinIO")
	}
	bin, err := b.build(ctx, "cofferd")
	if err != nil {
		return nil, err
	}
	return retryPort(ctx, func() (*vaultServer, error) { return tryStartVault(ctx, b, bin) })
}

func tryStartVault(ctx context.Context, b *bench, bin string) (*vaultServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	metrics, err := freePort()
	if err != nil {
		return nil, err
	}
	home := filepath.Join(b.cfg.Workdir, "runs", "cofferd")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	v := &vaultServer{
		URL:      fmt.Sprintf("http://127.0.0.1:%d", port),
		storeURL: fmt.Sprintf("s3://%s/%s?tls=false", b.minio.Endpoint, vaultBucket),
		bin:      bin,
		env: append(cleanEnv(home), "AWS_ACCESS_KEY_ID="+b.minio.User, "AWS_SECRET_ACCESS_KEY="+b.minio.Password,
			"GOMEMLIMIT=200MiB"), // as the systemd unit sets it
		logPath: filepath.Join(b.cfg.Workdir, "logs", "cofferd.log"),
		done:    make(chan struct{}),
	}
	// Direct downloads on, as an MSP whose agents reach the bucket runs
	// it; the restore with them off is measured beside (restore-proxied).
	v.cmd = exec.Command(bin, "--store", v.storeURL, "serve", "--init", "--direct-downloads",
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", metrics))
	v.cmd.Dir = home
	v.cmd.Env = v.env
	if err := startServer(v.cmd, v.logPath, v.done); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-v.done:
			return nil, fmt.Errorf("cofferd exited (log %s)", v.logPath)
		case <-ctx.Done():
			v.Stop()
			return nil, ctx.Err()
		default:
		}
		if resp, err := client.Get(v.URL + vaultapi.RouteHealthz); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return v, nil
			}
		}
		if time.Now().After(deadline) {
			v.Stop()
			return nil, fmt.Errorf("cofferd not healthy after 60s (log %s)", v.logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends cofferd: SIGTERM (it drains), then SIGKILL after 40 seconds.
func (v *vaultServer) Stop() {
	if v != nil {
		stopServer(v.cmd, v.done, 40*time.Second)
	}
}

// cpuSeconds is the CPU time cofferd has used so far.
func (v *vaultServer) cpuSeconds() float64 { return procCPUSeconds(v.cmd.Process.Pid) }

// peakRSSKiB is cofferd's peak resident set so far (VmHWM).
func (v *vaultServer) peakRSSKiB() int64 { return procStatusKiB(v.cmd.Process.Pid, "VmHWM:") }

// rssKiB is cofferd's resident set now (VmRSS).
func (v *vaultServer) rssKiB() int64 { return procStatusKiB(v.cmd.Process.Pid, "VmRSS:") }

// procCPUSeconds returns a process's user+system CPU time from /proc.
func procCPUSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(data, ')')
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// procStatusKiB returns a "<field> N kB" line of /proc/<pid>/status, or 0.
func procStatusKiB(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// createTenant runs `cofferd tenant create` and returns the tenant's ID and
// its enrollment token.
func (v *vaultServer) createTenant(ctx context.Context, name string) (id string, token vaultapi.Secret, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, v.bin, "--store", v.storeURL, "--json", "tenant", "create", name, "--quota", "none")
	cmd.Env = v.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("cofferd tenant create %s: %v: %s", name, err, firstLine(errb.String(), err))
	}
	var created struct {
		Tenant struct {
			ID string `json:"id"`
		} `json:"tenant"`
		Token vaultapi.Secret `json:"token"`
	}
	if err := json.Unmarshal(out.Bytes(), &created); err != nil || created.Token == "" || !vaultapi.ValidTenantID(created.Tenant.ID) {
		return "", "", fmt.Errorf("cofferd tenant create %s: unexpected output (%v)", name, err)
	}
	return created.Tenant.ID, created.Token, nil
}

// vaultUsage returns the bytes and number of objects the vault holds for a
// tenant in its bucket.
func (b *bench) vaultUsage(ctx context.Context, tenantID string) (size, n int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	opts := minio.ListObjectsOptions{Prefix: "repos/" + tenantID + "/", Recursive: true}
	for obj := range b.minio.client.ListObjects(ctx, vaultBucket, opts) {
		if obj.Err != nil {
			return 0, 0, obj.Err
		}
		size += obj.Size
		n++
	}
	if n == 0 {
		return 0, 0, fmt.Errorf("no objects under repos/%s/ in bucket %s", tenantID, vaultBucket)
	}
	return size, n, nil
}

// Storm is the "16 uploads in flight" measurement: 4 tenants x 4 clients
// (vaultclient.Client, as the agent uses it) each PUT fresh 16 MiB packs with
// correct names, round after round, while cofferd's memory is sampled.
type Storm struct {
	Tenants     int      `json:"tenants"`
	Clients     int      `json:"clients"`
	PackBytes   int64    `json:"pack_bytes"`
	Rounds      int      `json:"rounds"`
	Puts        int64    `json:"puts"`
	MaxInFlight int64    `json:"max_in_flight"`
	Seconds     float64  `json:"seconds"`
	MBps        float64  `json:"mb_per_s"`
	PeakRSSKiB  int64    `json:"peak_rss_kib"`     // cofferd VmHWM at the end (its lifetime peak)
	MaxRSSKiB   int64    `json:"max_rss_kib"`      // largest VmRSS sampled during the storm
	RSSBefore   int64    `json:"rss_before_kib"`   // VmRSS when the storm started
	CPUSeconds  float64  `json:"cpu_seconds"`      // cofferd's CPU during the storm
	Errors      []string `json:"errors,omitempty"` // failed PUTs (at most a few)
	Error       string   `json:"error,omitempty"`  // why the storm did not run
}

const (
	stormTenants   = 4
	stormPerTenant = 4
	stormPackBytes = 16 << 20
)

// packSource is a 16 MiB pseudo-random pack made on the fly from AES-CTR,
// so that 16 uploads in flight cost the bench no memory to speak of.
type packSource struct {
	block cipher.Block
	size  int64
}

func newPackSource(size int64) (*packSource, error) {
	var key [16]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, err
	}
	bl, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	return &packSource{block: bl, size: size}, nil
}

func (p *packSource) ReadAt(buf []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("packSource: negative offset")
	}
	if off >= p.size {
		return 0, io.EOF
	}
	n := int(min(int64(len(buf)), p.size-off))
	var iv [aes.BlockSize]byte
	binary.BigEndian.PutUint64(iv[8:], uint64(off/aes.BlockSize))
	s := cipher.NewCTR(p.block, iv[:])
	if skip := int(off % aes.BlockSize); skip > 0 {
		var junk [aes.BlockSize]byte
		s.XORKeyStream(junk[:skip], junk[:skip])
	}
	out := buf[:n]
	clear(out)
	s.XORKeyStream(out, out)
	if n < len(buf) {
		return n, io.EOF
	}
	return n, nil
}

// name returns the pack's object name: data/<hh>/<sha256>.
func (p *packSource) name() (string, error) {
	h := sha256.New()
	if _, err := io.CopyBuffer(h, io.NewSectionReader(p, 0, p.size), make([]byte, 256<<10)); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	return "data/" + sum[:2] + "/" + sum, nil
}

// enroll enrolls a new agent credential with a tenant's token.
func (v *vaultServer) enroll(ctx context.Context, token vaultapi.Secret) (vaultapi.Secret, error) {
	base, err := url.Parse(v.URL)
	if err != nil {
		return "", err
	}
	cred, id, sum, err := vaultapi.NewCredential()
	if err != nil {
		return "", err
	}
	req := vaultapi.EnrollRequest{Token: token, CredentialID: id, CredentialSHA256: hex.EncodeToString(sum[:]), Host: "bench-storm"}
	if _, err := vaultclient.Enroll(ctx, vaultclient.Config{BaseURL: base}, req); err != nil {
		return "", err
	}
	return cred, nil
}

// storm runs the 16-uploads-in-flight measurement against b.vault.
func (b *bench) storm(ctx context.Context) *Storm {
	rounds := 8
	if b.cfg.Quick {
		rounds = 4
	}
	st := &Storm{Tenants: stormTenants, Clients: stormTenants * stormPerTenant, PackBytes: stormPackBytes, Rounds: rounds}
	v := b.vault
	type client struct {
		s    store.Store // conn with the agent's retries (429s are waited out)
		tid  int
		conn *vaultclient.Client
	}
	var clients []client
	defer func() {
		for _, c := range clients {
			_ = c.conn.Close()
		}
	}()
	for t := range stormTenants {
		_, token, err := v.createTenant(ctx, fmt.Sprintf("storm-%d", t+1))
		if err != nil {
			st.Error = err.Error()
			return st
		}
		// One enrollment per tenant; its credential is shared by the
		// tenant's clients, each with a connection pool of its own.
		cred, err := v.enroll(ctx, token)
		if err != nil {
			st.Error = fmt.Sprintf("enrolling storm-%d: %v", t+1, err)
			return st
		}
		base, _ := url.Parse(v.URL)
		for range stormPerTenant {
			conn, err := vaultclient.New(vaultclient.Config{BaseURL: base, Credential: cred})
			if err != nil {
				st.Error = err.Error()
				return st
			}
			clients = append(clients, client{s: storeurl.Decorate(conn, storeurl.Options{Retry: store.DefaultRetry}).Retry, tid: t, conn: conn})
		}
	}
	b.logf("vault: %d clients of %d tenants put %d MiB packs, %d rounds", len(clients), stormTenants, stormPackBytes>>20, rounds)

	var peakRSS atomic.Int64
	sampleStop, sampled := make(chan struct{}), make(chan struct{})
	st.RSSBefore = v.rssKiB()
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if r := v.rssKiB(); r > peakRSS.Load() {
				peakRSS.Store(r)
			}
			select {
			case <-sampleStop:
				return
			case <-tick.C:
			}
		}
	}()

	cpu0 := v.cpuSeconds()
	var inFlight, maxInFlight, puts atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if ctx.Err() != nil {
					return
				}
				src, err := newPackSource(stormPackBytes)
				var name string
				if err == nil {
					name, err = src.name()
				}
				if err == nil {
					n := inFlight.Add(1)
					for {
						m := maxInFlight.Load()
						if n <= m || maxInFlight.CompareAndSwap(m, n) {
							break
						}
					}
					err = c.s.Put(ctx, name, src, stormPackBytes)
					inFlight.Add(-1)
				}
				if err != nil {
					mu.Lock()
					if len(st.Errors) < 5 {
						st.Errors = append(st.Errors, fmt.Sprintf("storm-%d: %v", c.tid+1, err))
					}
					mu.Unlock()
					continue
				}
				puts.Add(1)
			}
		}()
	}
	wg.Wait()
	st.Seconds = time.Since(start).Seconds()
	close(sampleStop)
	<-sampled
	st.CPUSeconds = v.cpuSeconds() - cpu0
	st.Puts = puts.Load()
	st.MaxInFlight = maxInFlight.Load()
	st.MaxRSSKiB = peakRSS.Load()
	st.PeakRSSKiB = v.peakRSSKiB()
	if st.Seconds > 0 {
		st.MBps = float64(st.Puts*stormPackBytes) / 1e6 / st.Seconds
	}
	b.logf("vault: %d puts in %.1fs (%.0f MB/s), %d in flight at most; cofferd RSS %.0f MiB at most, peak (VmHWM) %.0f MiB",
		st.Puts, st.Seconds, st.MBps, st.MaxInFlight, float64(st.MaxRSSKiB)/1024, float64(st.PeakRSSKiB)/1024)
	return st
}

// measuredStep is measured, plus, on the vault target, the CPU MinIO and
// cofferd used during the step and cofferd's peak RSS after it.
func (b *bench) measuredStep(ctx context.Context, s *Session, name string, argv []string, imageBytes int64, inputs ...string) (*Step, []byte, error) {
	if s.Target != targetVault || b.vault == nil || b.minio == nil {
		return b.measured(ctx, s, name, argv, imageBytes, inputs...)
	}
	m0, v0 := b.minio.cpuSeconds(), b.vault.cpuSeconds()
	st, out, err := b.measured(ctx, s, name, argv, imageBytes, inputs...)
	st.ServerCPU = b.minio.cpuSeconds() - m0
	st.VaultCPU = b.vault.cpuSeconds() - v0
	st.VaultRSSKiB = b.vault.peakRSSKiB()
	return st, out, err
}
