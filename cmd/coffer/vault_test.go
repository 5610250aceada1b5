package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// testVault is a small fake of cofferd's agent API over a Local store: one
// tenant, credentials from enrollment, create-only puts, append-only.
type testVault struct {
	t          *testing.T
	st         store.Store
	configPath string // the agent config that must hold the credential before enroll

	mu     sync.Mutex
	tokens map[string]string // token -> credential sha256 ("" = unused)
	creds  map[string]bool   // sha256 of accepted credential secrets
	quota  bool              // refuse pack puts with 507 quota_exceeded
	rto    float64           // the tenant's recovery time objective, seconds
	seeds  seedRoutes        // the seed routes (seed_vault_test.go)
}

func newTestVault(t *testing.T) (*testVault, *httptest.Server) {
	t.Helper()
	st, err := store.OpenLocal(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	v := &testVault{t: t, st: st, tokens: map[string]string{}, creds: map[string]bool{}}
	srv := httptest.NewServer(v)
	t.Cleanup(srv.Close)
	return v, srv
}

func (v *testVault) token() string {
	tok, _, _, err := vaultapi.NewToken()
	if err != nil {
		v.t.Fatal(err)
	}
	v.mu.Lock()
	v.tokens[tok.Reveal()] = ""
	v.mu.Unlock()
	return tok.Reveal()
}

func vaultErr(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(vaultapi.StatusOf(code))
	var b vaultapi.ErrorBody
	b.Error = vaultapi.ErrorDetail{Code: code, Message: msg, RequestID: "r1"}
	_ = json.NewEncoder(w).Encode(b)
}

func (v *testVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if r.URL.Path == vaultapi.RouteEnroll {
		v.enroll(w, r)
		return
	}
	_, secret, err := vaultapi.ParseCredential(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	sum := vaultapi.SecretSHA256(secret)
	v.mu.Lock()
	ok := err == nil && v.creds[hex.EncodeToString(sum[:])]
	v.mu.Unlock()
	if !ok {
		vaultErr(w, vaultapi.CodeInvalidCredential, "invalid credential")
		return
	}
	if v.seeds.serve(w, r) {
		return
	}
	if r.URL.Path == vaultapi.RouteTenant {
		v.mu.Lock()
		rto := v.rto
		v.mu.Unlock()
		_ = json.NewEncoder(w).Encode(vaultapi.TenantInfo{ID: strings.Repeat("a", 24), Name: "acme", State: vaultapi.StateActive, RTOSeconds: rto})
		return
	}
	if r.URL.Path == vaultapi.RouteSession {
		_ = json.NewEncoder(w).Encode(vaultapi.SessionInfo{ID: "0123456789abcdef01234567", Started: time.Now().UTC(), Heartbeat: 300, Unusable: []string{}})
		return
	}
	if strings.HasPrefix(r.URL.Path, vaultapi.RouteSession+"/") {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.URL.Path == vaultapi.RouteList {
		prefix, after := r.URL.Query().Get("prefix"), r.URL.Query().Get("after")
		if vaultapi.ValidListPrefix(prefix) != nil {
			vaultErr(w, vaultapi.CodeBadPrefix, "bad prefix")
			return
		}
		var page vaultapi.ListPage
		page.Objects = []vaultapi.ObjectInfo{}
		_ = v.st.List(ctx, prefix, func(i store.Info) error {
			if i.Name > after {
				page.Objects = append(page.Objects, vaultapi.ObjectInfo{Name: i.Name, Size: i.Size})
			}
			return nil
		})
		slices.SortFunc(page.Objects, func(a, b vaultapi.ObjectInfo) int { return strings.Compare(a.Name, b.Name) })
		_ = json.NewEncoder(w).Encode(page)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, vaultapi.RouteRepo)
	kind, err := vaultapi.ParseRepoName(name)
	if !ok || err != nil {
		vaultErr(w, vaultapi.CodeBadName, "bad name")
		return
	}
	switch r.Method {
	case http.MethodPut:
		if kind == vaultapi.KindPack && v.quota {
			vaultErr(w, vaultapi.CodeQuotaExceeded, `tenant "acme": quota 1.00 MiB exceeded (stored 1.02 MiB, in flight 0 B, this object 3.0 MiB)`)
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil || int64(len(b)) != r.ContentLength {
			vaultErr(w, vaultapi.CodeTruncated, "truncated")
			return
		}
		err = v.st.Put(ctx, name, bytes.NewReader(b), int64(len(b)))
		if errors.Is(err, store.ErrExists) {
			vaultErr(w, vaultapi.CodeExists, "exists")
			return
		} else if err != nil {
			vaultErr(w, vaultapi.CodeInternal, err.Error())
			return
		}
		w.WriteHeader(http.StatusCreated)
	case http.MethodHead:
		info, err := v.st.Stat(ctx, name)
		if err != nil {
			vaultErr(w, vaultapi.CodeNotFound, "not found")
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	case http.MethodGet:
		b, err := store.ReadAll(ctx, v.st, name)
		if err != nil {
			vaultErr(w, vaultapi.CodeNotFound, "not found")
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	default:
		vaultErr(w, vaultapi.CodeAppendOnly, "agents cannot delete")
	}
}

func (v *testVault) enroll(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var req vaultapi.EnrollRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		vaultErr(w, vaultapi.CodeBadRequest, "bad json")
		return
	}
	// The agent wrote its credential before calling: check the config.
	var c agentConfig
	b, err := os.ReadFile(v.configPath)
	if err == nil {
		err = yaml.Unmarshal(b, &c)
	}
	_, secret, perr := vaultapi.ParseCredential(c.PendingCredential.Reveal())
	sum := vaultapi.SecretSHA256(secret)
	if err != nil || perr != nil || hex.EncodeToString(sum[:]) != req.CredentialSHA256 {
		v.t.Errorf("enroll before the credential was in the config as pending (%v, %v)", err, perr)
	}
	if strings.Contains(string(raw), c.PendingCredential.Reveal()) {
		v.t.Error("the enroll request holds the credential itself")
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	used, ok := v.tokens[req.Token.Reveal()]
	switch {
	case !ok:
		vaultErr(w, vaultapi.CodeTokenExpired, "enrollment token expired; ask your provider for a new one")
		return
	case used != "" && used != req.CredentialSHA256:
		vaultErr(w, vaultapi.CodeTokenUsed, "enrollment token already used")
		return
	}
	v.tokens[req.Token.Reveal()] = req.CredentialSHA256
	v.creds[req.CredentialSHA256] = true
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(vaultapi.EnrollResponse{TenantName: "acme", TenantID: strings.Repeat("a", 24), CredentialID: req.CredentialID})
}

type runResult struct {
	code           int
	stdout, stderr string
}

func runCoffer(t *testing.T, args ...string) runResult {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return runResult{code, out.String(), errb.String()}
}

// noSecretIn fails if any file under dirs holds s.
func noSecretIn(t *testing.T, s string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, _ := os.ReadFile(p)
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a secret", p)
			}
			return nil
		})
	}
}

func TestInitThroughVault(t *testing.T) {
	t.Setenv("COFFER_INSECURE_TEST_KDF", "1")
	t.Setenv("COFFER_PASSWORD", "correct horse")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	v, srv := newTestVault(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "agent", "coffer.yaml")
	v.configPath = conf
	tok := v.token()

	t.Setenv(EnvEnrollToken, tok)
	r := runCoffer(t, "--config", conf, "init", "--repo", srv.URL)
	if r.code != 0 {
		t.Fatalf("init: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Setenv(EnvEnrollToken, "")
	fi, err := os.Stat(conf)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config %v, %v; want mode 0600", fi, err)
	}
	var c agentConfig
	b, _ := os.ReadFile(conf)
	if err := yaml.Unmarshal(b, &c); err != nil || c.Repository != srv.URL || !c.Enrolled {
		t.Fatalf("config = %+v, %v", c, err)
	}
	if _, _, err := vaultapi.ParseCredential(c.Credential.Reveal()); err != nil {
		t.Fatalf("config credential: %v", err)
	}
	for _, secret := range []string{tok, c.Credential.Reveal()} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("init printed a secret:\n%s%s", r.stdout, r.stderr)
		}
	}
	noSecretIn(t, tok, dir)
	if _, err := v.st.Stat(t.Context(), "config"); err != nil {
		t.Fatalf("no repository config in the vault: %v", err)
	}

	// Later commands read the credential from the config.
	img := filepath.Join(dir, "disk.img")
	data := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCoffer(t, "--config", conf, "--quiet", "backup", "--image", img); r.code != 0 {
		t.Fatalf("backup: exit %d\n%s", r.code, r.stderr)
	}
	out := filepath.Join(dir, "restored.img")
	if r := runCoffer(t, "--config", conf, "--quiet", "restore", "latest", "--name", "disk.img", "--to", out); r.code != 0 {
		t.Fatalf("restore: exit %d\n%s", r.code, r.stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatal("restored image differs")
	}

	// A backup refused for quota: exit 1, the server's message, and what
	// to do.
	v.quota = true
	data[0] ^= 0xff
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r = runCoffer(t, "--config", conf, "--quiet", "backup", "--image", img)
	if r.code != 1 || !strings.Contains(r.stderr, `tenant "acme": quota 1.00 MiB exceeded`) ||
		!strings.Contains(r.stderr, "Nothing stored was lost") || !strings.Contains(r.stderr, "resumes where it stopped") {
		t.Fatalf("backup over quota: exit %d\n%s", r.code, r.stderr)
	}
	v.quota = false
	if r := runCoffer(t, "--config", conf, "--quiet", "backup", "--image", img); r.code != 0 {
		t.Fatalf("backup after the quota was raised: exit %d\n%s", r.code, r.stderr)
	}

	// key passwd: the new slot is added, the old one cannot be deleted
	// through the vault, which is said, not hidden.
	t.Setenv("COFFER_NEW_PASSWORD", "battery staple")
	r = runCoffer(t, "--config", conf, "key", "passwd")
	if r.code != 0 || !strings.Contains(r.stderr, "append-only") || !strings.Contains(r.stderr, "OLD passphrase still opens") ||
		!regexp.MustCompile(`ask your provider to remove it with: cofferd tenant remove-key acme [0-9a-f]{64}\n`).MatchString(r.stderr) {
		t.Fatalf("key passwd: exit %d\n%s", r.code, r.stderr)
	}
	checkPasswdThroughVault(t, conf, v.st)
	t.Setenv("COFFER_PASSWORD", "battery staple")
	if r := runCoffer(t, "--config", conf, "--quiet", "--no-key-cache", "snapshots"); r.code != 0 {
		t.Fatalf("snapshots with the new passphrase: exit %d\n%s", r.code, r.stderr)
	}

	// A wrong credential: exit 1 and the re-enroll hint, no secret.
	bad, _, _, _ := vaultapi.NewCredential()
	t.Setenv(vaultclient.EnvCredential, bad.Reveal())
	r = runCoffer(t, "--config", conf, "snapshots")
	if r.code != 1 || !strings.Contains(r.stderr, "re-enroll") || strings.Contains(r.stderr, bad.Reveal()) {
		t.Fatalf("snapshots with a bad credential: exit %d\n%s", r.code, r.stderr)
	}
	t.Setenv(vaultclient.EnvCredential, "")

	// A second agent of the same tenant joins its repository: the tenant's
	// passphrase opens it, nothing in the vault changes, and the second
	// agent sees the first one's snapshots.
	before, _ := store.ReadAll(t.Context(), v.st, "config")
	conf2 := filepath.Join(dir, "agent2", "coffer.yaml")
	v.configPath = conf2
	tok2 := v.token()
	r = runCoffer(t, "--config", conf2, "init", "--repo", srv.URL, "--token", tok2)
	if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "joined the tenant's repository") || strings.Contains(r.stdout+r.stderr, tok2) {
		t.Fatalf("second init: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if after, _ := store.ReadAll(t.Context(), v.st, "config"); !bytes.Equal(after, before) {
		t.Fatal("second init changed the repository config")
	}
	if r = runCoffer(t, "--config", conf2, "snapshots"); r.code != 0 {
		t.Fatalf("snapshots from the second agent: exit %d\n%s", r.code, r.stderr)
	}
	// With a wrong passphrase it cannot join (exit 12), and writes no config.
	conf3 := filepath.Join(dir, "agent3", "coffer.yaml")
	v.configPath = conf3
	t.Setenv("COFFER_PASSWORD", "not the tenant's passphrase")
	if r = runCoffer(t, "--config", conf3, "init", "--repo", srv.URL, "--token", v.token()); r.code != 12 {
		t.Fatalf("joining with a wrong passphrase: exit %d\n%s", r.code, r.stderr)
	}
	t.Setenv("COFFER_PASSWORD", "battery staple")
	noSecretIn(t, tok2, dir)
}

func TestInitVaultTokenErrors(t *testing.T) {
	t.Setenv("COFFER_PASSWORD", "pw")
	t.Setenv(vaultclient.EnvCredential, "")
	t.Setenv(EnvEnrollToken, "")
	v, srv := newTestVault(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "coffer.yaml")
	v.configPath = conf

	// No token.
	r := runCoffer(t, "--config", conf, "init", "--repo", srv.URL)
	if r.code != 2 || !strings.Contains(r.stderr, EnvEnrollToken) {
		t.Fatalf("init without a token: exit %d\n%s", r.code, r.stderr)
	}
	// A malformed token is refused before anything is sent, and not echoed.
	r = runCoffer(t, "--config", conf, "init", "--repo", srv.URL, "--token", "cft1_secretish")
	if r.code != 2 || strings.Contains(r.stderr, "secretish") {
		t.Fatalf("init with a malformed token: exit %d\n%s", r.code, r.stderr)
	}
	// A token the vault does not know (expired): exit 1, the vault's text.
	unknown, _, _, _ := vaultapi.NewToken()
	r = runCoffer(t, "--config", conf, "init", "--repo", srv.URL, "--token", unknown.Reveal())
	if r.code != 1 || !strings.Contains(r.stderr, "expired") || strings.Contains(r.stderr, unknown.Reveal()) {
		t.Fatalf("init with an unknown token: exit %d\n%s", r.code, r.stderr)
	}
	noSecretIn(t, unknown.Reveal(), dir)
	// A retry after the failure reuses the pending credential: same hash.
	var c1 agentConfig
	b, _ := os.ReadFile(conf)
	_ = yaml.Unmarshal(b, &c1)
	if c1.PendingCredential == "" || c1.Credential != "" || c1.Enrolled {
		t.Fatalf("config after a failed enrollment = %+v; want a pending credential only", c1)
	}
	// --token on a non-vault repository is a usage error.
	r = runCoffer(t, "--config", filepath.Join(dir, "other.yaml"), "init", "--repo", filepath.Join(dir, "local"), "--token", v.token())
	if r.code != 2 {
		t.Fatalf("init --token on a local repo: exit %d\n%s", r.code, r.stderr)
	}
	// Plain http to a non-loopback host is refused.
	r = runCoffer(t, "--config", filepath.Join(dir, "x.yaml"), "init", "--repo", "http://vault.example.com", "--token", v.token())
	if r.code == 0 || !strings.Contains(r.stderr, "clear text") {
		t.Fatalf("init over plain http: exit %d\n%s", r.code, r.stderr)
	}
}
