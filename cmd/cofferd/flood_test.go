package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// raiseNoFile makes room for n more descriptors, as far as the hard limit
// allows, and returns how many silent connections fit.
func raiseNoFile(t *testing.T, want int) int {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	need := uint64(want) + 1500 // the server's side of them is bounded by --max-conns
	if rl.Cur < need && rl.Max > rl.Cur {
		old := rl
		rl.Cur = min(need, rl.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	}
	if rl.Cur < need {
		return int(rl.Cur) - 1500
	}
	return want
}

// enroll enrolls a new credential with tok over a fresh connection.
func enroll(t *testing.T, base, tok string) (vaultapi.Secret, int) {
	t.Helper()
	cred, id, sum, _ := vaultapi.NewCredential()
	body, _ := vaultapi.EnrollRequest{Token: vaultapi.Secret(tok), CredentialID: id, CredentialSHA256: hex.EncodeToString(sum[:]), Host: "xen1"}.Encode()
	c := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	resp, err := c.Post(base+"/v1/enroll", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	resp.Body.Close()
	return cred, resp.StatusCode
}

// TestServeAgentsServedDuringSilentFlood is the attack: thousands
// of connections that send nothing are held open against `cofferd serve`,
// and a valid agent is still served at once, and so is an enrollment; the
// server holds no more connections than its limits, and a silent
// connection is closed after the header deadline.
func TestServeAgentsServedDuringSilentFlood(t *testing.T) {
	n := raiseNoFile(t, 2500)
	if n < 2000 {
		t.Fatalf("RLIMIT_NOFILE leaves room for only %d connections; raise the hard limit", n)
	}
	dir := t.TempDir()
	tokA := tokenRE.FindString(cofferd(t, dir, "tenant", "create", "acme").stdout)
	tokB := tokenRE.FindString(cofferd(t, dir, "tenant", "create", "bravo").stdout)
	const headerTimeout = 3 * time.Second
	sv := startServe(t, dir, "--max-conns", "1000", "--max-unauth-conns", "600", "--header-timeout", headerTimeout.String())
	base := "http://" + sv.listen
	credA, st := enroll(t, base, tokA)
	if st != 201 {
		t.Fatalf("enroll before the flood: %d", st)
	}
	silent := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	floodStart := time.Now()
	for len(silent) < n {
		c, err := net.Dial("tcp", sv.listen)
		if err != nil {
			t.Fatalf("silent connection %d: %v", len(silent), err)
		}
		silent = append(silent, c)
	}
	start := time.Now()
	if _, st := enroll(t, base, tokB); st != 201 {
		t.Fatalf("enroll during the flood: %d", st)
	}
	req, _ := http.NewRequest("GET", base+"/v1/tenant", nil)
	req.Header.Set("Authorization", "Bearer "+credA.Reveal())
	resp, err := (&http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("agent request during the flood: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // read to the end: the connection stays open, kept alive
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("agent request during the flood: %d", resp.StatusCode)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("enrollment and agent request took %s during the flood", took)
	}
	metrics := scrape(t, sv.metrics)
	u := metricOf(metrics, `cofferd_connections{state="unauthenticated"}`)
	if u > 600 || u < 0 {
		t.Errorf("server holds %v unauthenticated connections, want at most 600", u)
	}
	// Unless the machine was too slow for it, the flood still filled the
	// unauthenticated share when the agent was served.
	if time.Since(floodStart) < headerTimeout-500*time.Millisecond && u < 500 {
		t.Errorf("server holds only %v unauthenticated connections: the flood did not fill its share", u)
	}
	if a := metricOf(metrics, `cofferd_connections{state="authenticated"}`); a < 1 {
		t.Errorf("the agent's connection is not counted as authenticated (%v)", a)
	}
	if e := metricOf(metrics, `cofferd_connections_closed_total{reason="evicted"}`); e < float64(n-600) {
		t.Errorf("%v silent connections evicted, want at least %d", e, n-600)
	}
	// A silent connection is closed after the 2 s header deadline.
	c, err := net.Dial("tcp", sv.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opened := time.Now()
	_ = c.SetReadDeadline(opened.Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("silent connection not closed by the server: %v", err)
	}
	if took := time.Since(opened); took < headerTimeout-500*time.Millisecond || took > 2*headerTimeout+time.Second {
		t.Errorf("silent connection closed after %s, want about the %s header deadline", took, headerTimeout)
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricOf returns the value of one series in a Prometheus text page (-1
// when absent).
func metricOf(page, series string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestServeWarnsAboutOpenFileLimit: --max-conns above what the open-file
// limit allows is logged at start-up with the fix; a fitting one is not.
func TestServeWarnsAboutOpenFileLimit(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if r := cofferd(t, dir, "tenant", "create", "acme"); r.code != 0 { // a vault to serve
		t.Fatalf("tenant create: %+v", r)
	}
	sv := startServe(t, dir, "--max-conns", strconv.FormatUint(rl.Cur, 10))
	want := fmt.Sprintf("the open-file limit (%d) is below --max-conns", rl.Cur)
	if logs := sv.stderr.String(); !strings.Contains(logs, want) || !strings.Contains(logs, "LimitNOFILE") {
		t.Fatalf("no warning about the open-file limit:\n%s", logs)
	}
	if rl.Cur > 1000 {
		sv2 := startServe(t, dir, "--max-conns", "500")
		if strings.Contains(sv2.stderr.String(), "open-file limit") {
			t.Fatalf("warning with --max-conns 500 under a limit of %d", rl.Cur)
		}
	}
}
