package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// TestJunkThroughVault: junk a stolen agent credential can plant through a
// vault (a snapshot, an index file) breaks neither restore latest nor
// check, does not make every backup list the packs, and the warnings say
// the provider must remove it.
func TestJunkThroughVault(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "correct horse")
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	t.Setenv("XDG_CACHE_HOME", filepath.Join(dir, "cache"))
	t.Setenv(vaultclient.EnvCredential, "")
	v, _ := newTestVault(t)
	var packLists atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == vaultapi.RouteList && strings.HasPrefix(r.URL.Query().Get("prefix"), repo.DataPrefix) {
			packLists.Add(1)
		}
		v.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	conf := filepath.Join(dir, "coffer.yaml")
	v.configPath = conf
	t.Setenv(EnvEnrollToken, v.token())
	if r := runCoffer(t, "--config", conf, "init", "--repo", srv.URL); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	t.Setenv(EnvEnrollToken, "")
	img := filepath.Join(dir, "disk.img")
	data := make([]byte, 2<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	backup := func(what string, wantList bool) {
		t.Helper()
		before := packLists.Load()
		if r := runCoffer(t, "--config", conf, "--quiet", "backup", "--image", img, "--name", "web01"); r.code != 0 {
			t.Fatalf("%s: %+v", what, r)
		}
		if listed := packLists.Load() > before; listed != wantList {
			t.Fatalf("%s: listed the packs %v, want %v", what, listed, wantList)
		}
	}
	backup("first backup", false)

	// The attacker's puts go through the vault with the agent credential.
	var c agentConfig
	b, _ := os.ReadFile(conf)
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	plant := func(prefix string, body []byte) string {
		sum := sha256.Sum256(body)
		name := prefix + hex.EncodeToString(sum[:])
		req, _ := http.NewRequest(http.MethodPut, srv.URL+vaultapi.RouteRepo+name, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.Credential.Reveal())
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("planting %s: %v %v", name, err, resp)
		}
		resp.Body.Close()
		return name
	}
	junkSnap := plant(repo.SnapshotsPrefix, bytes.Repeat([]byte("S"), 500))
	junkIndex := plant(repo.IndexPrefix, bytes.Repeat([]byte("I"), 500))

	out := filepath.Join(dir, "out.img")
	r := runCoffer(t, "--config", conf, "restore", "latest", "--name", "web01", "--to", out)
	if r.code != 0 || !strings.Contains(r.stderr, "ask your provider to remove "+junkSnap) {
		t.Fatalf("restore latest with junk: %+v", r)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatal("restored image differs")
	}
	backup("first backup after the junk index", true)
	backup("second backup after the junk index", false)
	r = runCoffer(t, "--config", conf, "check")
	if r.code != 0 || !strings.Contains(r.stdout, "foreign: "+junkSnap) || !strings.Contains(r.stdout, "foreign: "+junkIndex) ||
		!strings.Contains(r.stdout, "ask your provider") || strings.Contains(r.stdout, "error:") {
		t.Fatalf("check with junk: %+v", r)
	}
}
