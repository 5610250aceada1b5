package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// strictJSON decodes exactly one JSON value into v, refusing unknown
// fields, so the documented shapes stay the printed ones.
func strictJSON(s string, v any) error {
	d := json.NewDecoder(strings.NewReader(s))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return json.Unmarshal([]byte("x"), v)
	}
	return nil
}

// Every command prints one JSON document under --json, of its documented
// type.
func TestJSONOutput(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	f := newKeysFixture(t)
	dir := f.dir
	idFile := filepath.Join(t.TempDir(), "id")
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"status":"ok"}`)) }))
	defer healthy.Close()
	var (
		tok     tokenOut
		info    vaultapi.TenantInfo
		infos   []vaultapi.TenantInfo
		creds   []credOut
		rev     revokeOut
		keys    keysOut
		removed removedOut
		esc     escrowOut
		health  healthOut
		ver     versionOut
		ini     initOut
		verify  verifyOut
	)
	for _, c := range []struct {
		args []string
		v    any
	}{
		{[]string{"tenant", "create", "beta"}, &tok},
		{[]string{"tenant", "token", "beta"}, &tok},
		{[]string{"tenant", "list"}, &infos},
		{[]string{"tenant", "show", "acme"}, &info},
		{[]string{"tenant", "set-quota", "acme", "1TiB"}, &info},
		{[]string{"tenant", "suspend", "beta"}, &info},
		{[]string{"tenant", "resume", "beta"}, &info},
		{[]string{"tenant", "credentials", "acme"}, &creds},
		{[]string{"tenant", "revoke", "acme", f.credID}, &rev},
		{[]string{"tenant", "keys", "acme"}, &keys},
		{[]string{"tenant", "remove-key", "acme", f.trash}, &removed},
		{[]string{"escrow", "show"}, &esc},
		{[]string{"escrow", "verify", "--tenant", "acme", "--identity", f.identity}, &verify},
		{[]string{"health", "--url", healthy.URL + "/healthz"}, &health},
		{[]string{"version"}, &ver},
	} {
		r := cofferd(t, dir, append([]string{"--json"}, c.args...)...)
		if r.code != 0 || strictJSON(r.stdout, c.v) != nil || r.stderr != "" {
			t.Errorf("%v: %+v (%v)", c.args, r, strictJSON(r.stdout, c.v))
		}
	}
	if !verify.OK || verify.Slot != "keys/"+f.escrow || rev.Revoked != f.credID || keys.Tenant != "acme" || removed.Removed.ID != f.trash || !health.Healthy || ver.Name != "cofferd" ||
		ver.GoVersion != runtime.Version() || ver.Version == "" || info.Name != "beta" {
		t.Errorf("values: %+v %+v %+v %+v %+v", rev, keys.Tenant, removed.Removed.ID, health, ver)
	}
	fresh := t.TempDir()
	if r := cofferdNoInit(t, fresh, "--json", "init"); r.code != 0 || strictJSON(r.stdout, &ini) != nil {
		t.Errorf("init: %+v", r)
	}
	r := cofferd(t, fresh, "--json", "escrow", "init", "--out", idFile)
	if r.code != 0 || strictJSON(r.stdout, &esc) != nil || esc.Identity != idFile {
		t.Errorf("escrow init: %+v", r)
	}
	if r := cofferd(t, t.TempDir(), "version"); r.code != 0 || !strings.HasPrefix(r.stdout, "cofferd ") || !strings.Contains(r.stdout, runtime.Version()) {
		t.Errorf("version: %+v", r)
	}
}

// Under --json a failure prints one error object on stderr, with the exit
// code and a kind, and nothing on stdout.
func TestJSONErrors(t *testing.T) {
	dir := t.TempDir()
	cofferd(t, dir, "tenant", "create", "acme")
	unhealthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":{"code":"draining","message":"cofferd is shutting down"}}`))
	}))
	defer unhealthy.Close()
	for _, c := range []struct {
		args []string
		code int
		kind string
		want string
	}{
		{[]string{"tenant", "show", "nobody"}, 1, "not_found", `no tenant named "nobody"`},
		{[]string{"tenant", "create", "acme"}, 1, "exists", `tenant name "acme" is taken`},
		{[]string{"tenant", "create", "x", "--quota", "0"}, 2, "usage", "write unlimited"},
		{[]string{"tenant", "nope"}, 2, "usage", "unknown command"},
		{[]string{"tenant", "list", "--bogus"}, 2, "usage", "unknown flag"},
		{[]string{"--store", "file://" + filepath.Join(dir, "nope"), "tenant", "list"}, 10, "no_vault", "no vault at"},
		{[]string{"health", "--url", unhealthy.URL + "/healthz"}, 1, "failure", "503 Service Unavailable draining: cofferd is shutting down"},
		{[]string{"escrow", "show"}, 1, "no_escrow", "escrow init"},
		{[]string{"init"}, 1, "exists", "a vault exists already at file://" + dir},
	} {
		r := cofferd(t, dir, append([]string{"--json"}, c.args...)...)
		var e cli.ErrorBody
		if r.code != c.code || r.stdout != "" || strictJSON(r.stderr, &e) != nil || e.Error.Code != c.code || e.Error.Kind != c.kind ||
			!strings.Contains(e.Error.Message, c.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: %+v", c.args, r)
		}
	}
	// Without --json: text, as before.
	if r := cofferd(t, dir, "tenant", "show", "nobody"); r.code != 1 || !strings.HasPrefix(r.stderr, "cofferd: no tenant named") {
		t.Errorf("text error: %+v", r)
	}
}
