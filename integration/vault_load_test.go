package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/testutil/testfile"
)

// Load test shape: 4 tenants (client companies) of 4 agents (machines)
// each; a tenant's agents share its repository (the first creates it, the
// others join). Every agent backs up and restores at once, and the
// per-tenant limits are lowered so that the vault really throttles them.
const (
	loadCompanies    = 4
	loadAgentsPerCo  = 4
	loadImageSize    = 32 << 20
	loadSlowAgents   = 4       // the first machine of every company
	loadSlowLinkRate = 2 << 20 // bytes/s, each direction, shared by the slow agents
	loadTimeout      = 4 * time.Minute
)

// LoadReport is what the load test measured; it goes to t.Log and, as
// JSON, to $COFFER_LOAD_REPORT.
type LoadReport struct {
	Agents        int                `json:"agents"`
	Tenants       int                `json:"tenants"`
	SlowAgents    int                `json:"slow_agents"`
	SlowLinkBps   int                `json:"slow_link_bytes_per_s"`
	ImageBytes    int64              `json:"image_bytes"`
	Limits        []string           `json:"cofferd_limits"`
	WallSeconds   float64            `json:"wall_seconds"`
	Requests      int                `json:"requests"`
	ByStatus      map[string]int     `json:"by_status"`
	Errors        map[string]int     `json:"errors_by_code"`
	Throttled     int                `json:"throttled_429"`
	LatencyMs     map[string]Latency `json:"latency_ms"` // by route, and "all"
	PeakRSSKiB    int64              `json:"cofferd_peak_rss_kib"`
	BytesIn       int64              `json:"bytes_in"`
	BytesOut      int64              `json:"bytes_out"`
	AgentExit     []int              `json:"agent_exit_codes"`
	AgentSeconds  []float64          `json:"agent_seconds"`
	RestoresEqual int                `json:"restores_identical"`
}

// Latency is the exact p50/p99 of the access log's dur_ms.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// accessLine is one cofferd access log line (vault/middleware.go).
type accessLine struct {
	Msg      string  `json:"msg"`
	Route    string  `json:"route"`
	Method   string  `json:"method"`
	Status   int     `json:"status"`
	Code     string  `json:"code"`
	BytesIn  int64   `json:"bytes_in"`
	BytesOut int64   `json:"bytes_out"`
	DurMs    float64 `json:"dur_ms"`
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func latencyOf(v []float64) Latency {
	slices.Sort(v)
	l := Latency{N: len(v), P50: percentile(v, 50), P99: percentile(v, 99)}
	if len(v) > 0 {
		l.Max = v[len(v)-1]
	}
	return l
}

// parseAccessLog fills the request figures of rep from cofferd's JSON log.
func parseAccessLog(r io.Reader, rep *LoadReport) error {
	rep.ByStatus, rep.Errors, rep.LatencyMs = map[string]int{}, map[string]int{}, map[string]Latency{}
	durs := map[string][]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l accessLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "request" {
			continue
		}
		rep.Requests++
		rep.ByStatus[strconv.Itoa(l.Status)]++
		if l.Status >= 400 {
			rep.Errors[fmt.Sprintf("%d %s", l.Status, l.Code)]++
		}
		if l.Status == http.StatusTooManyRequests {
			rep.Throttled++
		}
		rep.BytesIn += l.BytesIn
		rep.BytesOut += l.BytesOut
		key := l.Route + " " + l.Method
		durs[key] = append(durs[key], l.DurMs)
		durs["all"] = append(durs["all"], l.DurMs)
	}
	for k, v := range durs {
		rep.LatencyMs[k] = latencyOf(v)
	}
	return sc.Err()
}

// vmHWM reads a process's peak resident set size in KiB.
func vmHWM(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// slowLink is a TCP proxy to target whose two directions are each limited
// to rate bytes/s, shared by every connection through it: one slow line
// that several agents sit behind.
type slowLink struct {
	ln     net.Listener
	target string
	up     *rate.Limiter
	down   *rate.Limiter
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func startSlowLink(t *testing.T, target string, bps int) *slowLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	const burst = 32 << 10
	s := &slowLink{ln: ln, target: target,
		up: rate.NewLimiter(rate.Limit(bps), burst), down: rate.NewLimiter(rate.Limit(bps), burst),
		conns: []net.Conn{}}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(s.close)
	return s
}

func (s *slowLink) addr() string { return s.ln.Addr().String() }

func (s *slowLink) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return false // closed
	}
	s.conns = append(s.conns, c)
	return true
}

func (s *slowLink) accept() {
	defer s.wg.Done()
	for {
		in, err := s.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", s.target)
		if err != nil {
			in.Close()
			continue
		}
		if !s.track(in) || !s.track(out) {
			in.Close()
			out.Close()
			return
		}
		s.wg.Add(2)
		go s.pipe(out, in, s.up)
		go s.pipe(in, out, s.down)
	}
}

// pipe copies src to dst at the limiter's pace, then half-closes dst.
func (s *slowLink) pipe(dst, src net.Conn, lim *rate.Limiter) {
	defer s.wg.Done()
	buf := make([]byte, lim.Burst())
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if lim.WaitN(context.Background(), n) != nil {
				break
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		_ = dst.Close()
	}
}

func (s *slowLink) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	s.wg.Wait()
}

// loadVault is one cofferd binary with the lowered limits, logging to a
// file so that its access log can be read after the run.
type loadVault struct {
	*vault
	pid     int
	logPath string
	stop    func()
}

func startLoadVault(t *testing.T, storeURL string, limits []string) *loadVault {
	t.Helper()
	addr := freeAddr(t)
	logPath := filepath.Join(t.TempDir(), "cofferd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--store", storeURL, "serve", "--init", "--listen", addr, "--metrics-listen", freeAddr(t)}, limits...)
	cmd := exec.Command(cofferdBin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(40 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			_ = logf.Close()
		})
	}
	t.Cleanup(stop)
	lv := &loadVault{vault: &vault{t: t, storeURL: storeURL, url: "http://" + addr, log: &bytes.Buffer{}},
		pid: cmd.Process.Pid, logPath: logPath, stop: stop}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(lv.url + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return lv
			}
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(logPath)
			t.Fatalf("cofferd did not become healthy on %s: %v\n%s", addr, err, data)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// loadAgent is one machine of the load test and what its run gave.
type loadAgent struct {
	*agent
	name     string // the tenant's
	vm       string // the snapshot name: the machine's
	repo     string // the vault's URL, or the slow link's
	image    string
	restored string
	exit     int
	failed   string // the command that failed and its output
	seconds  float64
}

// run backs up and restores (init is done beforehand), stopping at the
// first failure.
func (la *loadAgent) run(ctx context.Context) {
	start := time.Now()
	defer func() { la.seconds = time.Since(start).Seconds() }()
	for _, args := range [][]string{
		{"backup", "--image", la.image, "--name", la.vm, "--json"},
		{"restore", "latest", "--name", la.vm, "--to", la.restored},
	} {
		cmd := la.cmd(ctx, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			la.exit = ee.ExitCode()
		case err != nil:
			la.exit = -1
		}
		if err != nil {
			la.failed = fmt.Sprintf("coffer %s: %v\n%s", args[0], err, out.String())
			return
		}
	}
}

// TestVaultLoad drives 16 agents of 4 tenants through one cofferd on
// MinIO at once, 4 of them over a slow link, with per-tenant limits low
// enough that the vault throttles; every agent must finish, every restore
// must be byte-identical, and the report gives the request figures,
// latencies and cofferd's peak RSS.
func TestVaultLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: skipped with -short")
	}
	minio.Require(t)
	limits := []string{"--tenant-uploads", "1", "--tenant-rps", "4", "--tenant-burst", "8"}
	v := startLoadVault(t, minio.NewBucket(t), limits)
	slow := startSlowLink(t, strings.TrimPrefix(v.url, "http://"), loadSlowLinkRate)

	var agents []*loadAgent
	for c := range loadCompanies {
		name := fmt.Sprintf("company%d", c+1)
		_, token := v.createTenant(name, "none")
		for m := range loadAgentsPerCo {
			if m > 0 {
				token = v.newToken(name) // every agent enrolls with a token of its own
			}
			la := &loadAgent{agent: enrolledAgent(t, token), name: name, vm: fmt.Sprintf("vm%d", m+1), repo: v.url}
			if m < loadSlowAgents/loadCompanies {
				la.repo = "http://" + slow.addr()
			}
			// The first agent creates the tenant's repository, the others join it.
			la.ok("init", "--repo", la.repo)
			la.image = filepath.Join(la.dir, "disk.img")
			la.restored = filepath.Join(la.dir, "restored.img")
			if err := diskgen.Generate(la.image, loadImageSize, uint64(100+len(agents)), diskgen.Options{}); err != nil {
				t.Fatal(err)
			}
			agents = append(agents, la)
		}
	}

	// Sample cofferd's peak RSS while the agents run (VmHWM is a high-water
	// mark already; sampling keeps the last value before cofferd exits).
	var peak int64
	sampleDone := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampleDone)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if kib, err := vmHWM(v.pid); err == nil {
				peak = max(peak, kib)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for _, la := range agents {
		wg.Add(1)
		go func() { defer wg.Done(); la.run(ctx) }()
	}
	wg.Wait()
	wall := time.Since(start)
	close(stopSampling)
	<-sampleDone

	rep := LoadReport{Agents: len(agents), Tenants: loadCompanies, SlowAgents: loadSlowAgents,
		SlowLinkBps: loadSlowLinkRate, ImageBytes: loadImageSize, Limits: limits,
		WallSeconds: wall.Seconds(), PeakRSSKiB: peak}
	for _, la := range agents {
		rep.AgentExit = append(rep.AgentExit, la.exit)
		rep.AgentSeconds = append(rep.AgentSeconds, math.Round(la.seconds*10)/10)
		if la.failed != "" {
			t.Errorf("agent %s (via %s): %s", la.name, la.repo, la.failed)
			continue
		}
		if same, err := testfile.Equal(la.image, la.restored); err != nil || !same {
			t.Errorf("agent %s: restored image differs from the original (%v)", la.name, err)
			continue
		}
		rep.RestoresEqual++
	}
	// Nothing lost: every tenant holds exactly one snapshot per agent.
	for c := range loadCompanies {
		name := fmt.Sprintf("company%d", c+1)
		if stored, snaps := v.usage(name); snaps != loadAgentsPerCo || stored <= 0 {
			t.Errorf("tenant %s: usage %d bytes, %d snapshots; want > 0 and %d", name, stored, snaps, loadAgentsPerCo)
		}
	}

	v.stop()
	logf, err := os.Open(v.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	if err := parseAccessLog(logf, &rep); err != nil {
		t.Fatal(err)
	}
	logReport(t, rep)

	if rep.Requests == 0 {
		t.Error("cofferd logged no requests")
	}
	if rep.Throttled == 0 {
		t.Error("no request was throttled (429): the lowered limits did not bite")
	}
	for status, n := range rep.ByStatus {
		if strings.HasPrefix(status, "5") {
			t.Errorf("%d responses with status %s", n, status)
		}
	}
	if rep.PeakRSSKiB == 0 {
		t.Error("cofferd's peak RSS was not measured")
	}
}

func logReport(t *testing.T, rep LoadReport) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "load: %d agents (%d tenants, %d on a %d MiB/s link), %d MiB images, limits %s, %.1fs\n",
		rep.Agents, rep.Tenants, rep.SlowAgents, rep.SlowLinkBps>>20, rep.ImageBytes>>20, strings.Join(rep.Limits, " "), rep.WallSeconds)
	fmt.Fprintf(&b, "  requests %d, by status %v, 429s %d, errors %v\n", rep.Requests, rep.ByStatus, rep.Throttled, rep.Errors)
	fmt.Fprintf(&b, "  bytes in %.1f MiB, out %.1f MiB; cofferd peak RSS %.1f MiB\n",
		float64(rep.BytesIn)/(1<<20), float64(rep.BytesOut)/(1<<20), float64(rep.PeakRSSKiB)/1024)
	keys := make([]string, 0, len(rep.LatencyMs))
	for k := range rep.LatencyMs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		l := rep.LatencyMs[k]
		fmt.Fprintf(&b, "  latency %-14s n=%-5d p50 %8.1f ms  p99 %8.1f ms  max %8.1f ms\n", k, l.N, l.P50, l.P99, l.Max)
	}
	fmt.Fprintf(&b, "  agent exit codes %v, seconds %v, restores identical %d/%d", rep.AgentExit, rep.AgentSeconds, rep.RestoresEqual, rep.Agents)
	t.Log(b.String())
	if path := os.Getenv("COFFER_LOAD_REPORT"); path != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err == nil {
			err = os.WriteFile(path, append(data, '\n'), 0o644)
		}
		if err != nil {
			t.Errorf("writing $COFFER_LOAD_REPORT: %v", err)
		}
	}
}

func TestParseAccessLog(t *testing.T) {
	log := `{"level":"INFO","msg":"cofferd serving"}
{"msg":"request","route":"repo","method":"PUT","status":201,"bytes_in":100,"dur_ms":10}
{"msg":"request","route":"repo","method":"PUT","status":429,"code":"too_many_uploads","dur_ms":2000}
{"msg":"request","route":"repo","method":"GET","status":206,"bytes_out":50,"dur_ms":4}
{"msg":"request","route":"list","method":"GET","status":429,"code":"rate_limited","dur_ms":1}
not json
`
	var rep LoadReport
	if err := parseAccessLog(strings.NewReader(log), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 4 || rep.Throttled != 2 || rep.BytesIn != 100 || rep.BytesOut != 50 {
		t.Errorf("requests %d, 429s %d, in %d, out %d; want 4, 2, 100, 50", rep.Requests, rep.Throttled, rep.BytesIn, rep.BytesOut)
	}
	if rep.Errors["429 too_many_uploads"] != 1 || rep.Errors["429 rate_limited"] != 1 || rep.ByStatus["201"] != 1 {
		t.Errorf("errors %v, by status %v", rep.Errors, rep.ByStatus)
	}
	if l := rep.LatencyMs["all"]; l.N != 4 || l.P50 != 4 || l.P99 != 2000 || l.Max != 2000 {
		t.Errorf("latency all = %+v; want n 4, p50 4, p99 2000", l)
	}
	if l := rep.LatencyMs["repo PUT"]; l.N != 2 || l.P50 != 10 {
		t.Errorf("latency repo PUT = %+v; want n 2, p50 10", l)
	}
}
