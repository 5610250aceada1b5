package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/buildinfo"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// served is a `cofferd serve` running in-process.
type served struct {
	listen, metrics string
	stderr          *syncBuffer
	done            chan int
	cancel          context.CancelFunc
}

// startServe runs `cofferd serve` on loopback over the store in dir, with
// extra serve flags, and waits until it listens. It is stopped at cleanup.
func startServe(t *testing.T, dir string, extra ...string) *served {
	t.Helper()
	return startServeArgs(t, append([]string{"--store", "file://" + dir, "serve"}, extra...)...)
}

// startServeArgs runs cofferd with args (which name the store and the
// serve command, and may add flags), listening on loopback.
func startServeArgs(t *testing.T, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sv := &served{stderr: &syncBuffer{}, done: make(chan int, 1), cancel: cancel}
	t.Cleanup(cancel)
	args = append(args, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
	go func() { sv.done <- run(ctx, args, io.Discard, sv.stderr) }()
	for deadline := time.Now().Add(10 * time.Second); sv.listen == ""; {
		for _, line := range strings.Split(sv.stderr.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "cofferd serving" {
				sv.listen, sv.metrics = m["listen"].(string), m["metrics"].(string)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start: %s", sv.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return sv
}

func TestServeRefusesPlainHTTPOffLoopback(t *testing.T) {
	r := cofferd(t, t.TempDir(), "serve", "--listen", "0.0.0.0:0")
	if r.code != exitUsage || !strings.Contains(r.stderr, "--tls-cert") || !strings.Contains(r.stderr, "--allow-plain-http") ||
		!strings.Contains(r.stderr, "loopback") {
		t.Fatalf("%+v", r)
	}
	if r := cofferd(t, t.TempDir(), "serve", "--listen", "127.0.0.1:0", "--tls-cert", "x.pem"); r.code != exitUsage {
		t.Fatalf("cert without key: %+v", r)
	}
}

// TestServeEndToEnd runs `cofferd serve` in-process on loopback: enroll
// with a token from `tenant create`, upload, read back, metrics, and a
// graceful shutdown with exit 0.
func TestServeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	tok := tokenRE.FindString(cofferd(t, dir, "tenant", "create", "acme").stdout)
	if tok == "" {
		t.Fatal("no token")
	}
	sv := startServe(t, dir)
	listen, metrics, stderr, done, cancel := sv.listen, sv.metrics, sv.stderr, sv.done, sv.cancel
	base := "http://" + listen
	cred, id, sum, _ := vaultapi.NewCredential()
	body, _ := vaultapi.EnrollRequest{Token: vaultapi.Secret(tok), CredentialID: id, CredentialSHA256: hex.EncodeToString(sum[:]), Host: "xen1"}.Encode()
	resp, err := http.Post(base+"/v1/enroll", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("enroll: %d", resp.StatusCode)
	}
	pack := bytes.Repeat([]byte("coffer"), 5000)
	h := sha256.Sum256(pack)
	name := "data/" + hex.EncodeToString(h[:1]) + "/" + hex.EncodeToString(h[:])
	req, _ := http.NewRequest("PUT", base+"/v1/repo/"+name, bytes.NewReader(pack))
	req.Header.Set("Authorization", "Bearer "+cred.Reveal())
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("put: %v %v", err, resp)
	}
	resp.Body.Close()
	req, _ = http.NewRequest("GET", base+"/v1/repo/"+name, nil)
	req.Header.Set("Authorization", "Bearer "+cred.Reveal())
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, pack) {
		t.Fatalf("read back %d bytes", len(got))
	}
	resp, err = http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(mb), "cofferd_tenant_bytes_in_total") {
		t.Fatal("metrics lack bytes in")
	}
	if !strings.Contains(string(mb), `coffer_build_info{version="`+buildinfo.Version()+`"} 1`) {
		t.Fatal("metrics lack coffer_build_info with the build's version")
	}
	if resp, err = http.Get("http://" + metrics + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", err, resp)
	}
	resp.Body.Close()
	// The healthcheck command the compose file and scripts use.
	if r := cofferd(t, dir, "health", "--url", "http://"+metrics+"/healthz"); r.code != 0 || !strings.Contains(r.stdout, "healthy") {
		t.Fatalf("cofferd health on a running vault: exit %d, %q", r.code, r.stdout)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop")
	}
	if r := cofferd(t, dir, "health", "--url", "http://"+metrics+"/healthz", "--timeout", "2s"); r.code != 1 {
		t.Fatalf("cofferd health on a stopped vault: exit %d, want 1", r.code)
	}
	if r := cofferd(t, dir, "health", "--url", "ftp://x"); r.code != 2 {
		t.Fatalf("cofferd health with a bad URL: exit %d, want 2", r.code)
	}
	logs := stderr.String()
	if strings.Contains(logs, "cfa1_") || strings.Contains(logs, "cft1_") || strings.Contains(logs, tok[30:]) {
		t.Fatal("log holds a secret")
	}
	if !strings.Contains(logs, `"route":"repo"`) || !strings.Contains(logs, "cofferd shutting down") {
		t.Fatalf("log lacks access or shutdown lines:\n%s", logs)
	}
}
