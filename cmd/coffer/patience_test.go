package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// awayVault answers 503 (Retry-After: 1) to the first requests after away
// is set, as a restarting cofferd behind a proxy does, then serves them.
type awayVault struct {
	*testVault
	away atomic.Int32
	// only, if set, picks the requests that find the vault away.
	only func(*http.Request) bool
}

func (a *awayVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if (a.only == nil || a.only(r)) && a.away.Add(-1) >= 0 {
		w.Header().Set("Retry-After", "1")
		vaultErr(w, vaultapi.CodeStoreUnavailable, "the vault is restarting")
		return
	}
	a.testVault.ServeHTTP(w, r)
}

// The agent's patience with a vault that is away is a setting: a short
// one (flag, environment or config key) gives up and names it; the default
// waits the vault out. A malformed value is a usage error.
func TestRetryPatienceSetting(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	t.Setenv(EnvRetryPatience, "")
	tv, _ := newTestVault(t)
	av := &awayVault{testVault: tv}
	srv := httptest.NewServer(av)
	t.Cleanup(srv.Close)
	conf := filepath.Join(t.TempDir(), "coffer.yaml")
	tv.configPath = conf
	if r := runCoffer(t, "--config", conf, "init", "--repo", srv.URL, "--token", tv.token()); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}

	gaveUp := func(r runResult) bool {
		return r.code == 1 && strings.Contains(r.stderr, "retry patience 1s") && strings.Contains(r.stderr, "restarting")
	}
	av.away.Store(1000)
	if r := runCoffer(t, "--config", conf, "--retry-patience", "1s", "snapshots"); !gaveUp(r) {
		t.Fatalf("--retry-patience 1s: exit %d\n%s", r.code, r.stderr)
	}
	t.Setenv(EnvRetryPatience, "1s")
	if r := runCoffer(t, "--config", conf, "snapshots"); !gaveUp(r) {
		t.Fatalf("%s=1s: exit %d\n%s", EnvRetryPatience, r.code, r.stderr)
	}
	t.Setenv(EnvRetryPatience, "")
	c := readConfig(t, conf)
	c.RetryPatience = "1s"
	if err := writeConfig(conf, c); err != nil {
		t.Fatal(err)
	}
	if r := runCoffer(t, "--config", conf, "snapshots"); !gaveUp(r) {
		t.Fatalf("retry_patience: 1s in the config: exit %d\n%s", r.code, r.stderr)
	}
	if r := runCoffer(t, "--config", conf, "--retry-patience", "soon", "snapshots"); r.code != 2 || !strings.Contains(r.stderr, `"soon"`) {
		t.Fatalf("--retry-patience soon: exit %d\n%s", r.code, r.stderr)
	}
	c.RetryPatience = ""
	if err := writeConfig(conf, c); err != nil {
		t.Fatal(err)
	}
	av.away.Store(2)
	if r := runCoffer(t, "--config", conf, "snapshots"); r.code != 0 {
		t.Fatalf("default patience, vault away for two requests: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(conf); err != nil {
		t.Fatal(err)
	}
}

// fakeSleeper is a clock.Clock whose sleeps only move its time.
type fakeSleeper struct{ now time.Time }

func (c *fakeSleeper) Now() time.Time { return c.now }
func (c *fakeSleeper) Sleep(ctx context.Context, d time.Duration) error {
	c.now = c.now.Add(d)
	return ctx.Err()
}

// The default patience outlasts a vault that is away for five minutes (a
// restart of cofferd's host), answering 503 all the while.
func TestDefaultPatienceOutlastsRestart(t *testing.T) {
	t.Setenv(EnvRetryPatience, "")
	g := &globals{configPath: filepath.Join(t.TempDir(), "none.yaml")}
	p, err := g.retryPolicy()
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeSleeper{now: time.Unix(1e9, 0)}
	back := clock.now.Add(5 * time.Minute)
	calls := 0
	err = store.Do(context.Background(), p, clock, nil, "stat", "config", func() error {
		calls++
		if clock.now.Before(back) {
			return &store.RetryAfterError{Wait: 5 * time.Second, Reason: vaultapi.CodeStoreUnavailable, Err: errors.New("503")}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after %d calls: %v", calls, err)
	}
}

// The backup summary's time includes waiting for a vault that was away
// while the index was loaded, and says how much of it that was.
func TestBackupTimeIncludesVaultWait(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	t.Setenv(EnvRetryPatience, "")
	tv, _ := newTestVault(t)
	av := &awayVault{testVault: tv, only: func(r *http.Request) bool {
		return r.URL.Path == vaultapi.RouteList && r.URL.Query().Get("prefix") == "index/"
	}}
	srv := httptest.NewServer(av)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	conf := filepath.Join(dir, "coffer.yaml")
	tv.configPath = conf
	if r := runCoffer(t, "--config", conf, "init", "--repo", srv.URL, "--token", tv.token()); r.code != 0 {
		t.Fatalf("init: exit %d\n%s", r.code, r.stderr)
	}
	img := writeImage(t, dir, "vm.img", 256<<10, "vm data ")
	av.away.Store(1)
	r := runCoffer(t, "--config", conf, "--json", "backup", "--image", img)
	if r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	s := lastJSON(t, r.stdout)
	secs, wait := s["duration_seconds"].(float64), s["retry_wait_seconds"].(float64)
	if wait < 1 || secs < wait {
		t.Fatalf("summary says %.2fs, %.2fs of it waiting to retry; the vault was away for a second (Retry-After: 1)", secs, wait)
	}
}
