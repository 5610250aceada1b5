package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/ledger"
)

type result struct {
	code           int
	stdout, stderr string
}

// cofferd runs a command on the vault in storeDir, making the vault first
// (cofferd init) when storeDir holds none.
func cofferd(t *testing.T, storeDir string, args ...string) result {
	t.Helper()
	if _, err := os.Stat(filepath.Join(storeDir, "vault", "format")); err != nil {
		if r := cofferdNoInit(t, storeDir, "init"); r.code != 0 {
			t.Fatalf("cofferd init: %+v", r)
		}
	}
	return cofferdNoInit(t, storeDir, args...)
}

// cofferdNoInit runs a command on storeDir as it is.
func cofferdNoInit(t *testing.T, storeDir string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"--store", "file://" + storeDir}, args...), &out, &errb)
	return result{code, out.String(), errb.String()}
}

var tokenRE = regexp.MustCompile(`cft1_[0-9a-f]{24}_[A-Za-z0-9_-]{43}`)

func TestTenantCommands(t *testing.T) {
	dir := t.TempDir()
	r := cofferd(t, dir, "tenant", "create", "acme", "--quota", "1GiB", "--vault-url", "https://vault.example:8443")
	if r.code != 0 {
		t.Fatalf("create: %d %s", r.code, r.stderr)
	}
	tok := tokenRE.FindString(r.stdout)
	if tok == "" || !strings.Contains(r.stdout, "quota: 1.00 GiB") ||
		!strings.Contains(r.stdout, "COFFER_ENROLL_TOKEN="+tok+" coffer init --repo https://vault.example:8443") ||
		!strings.Contains(r.stdout, "coffer init --repo https://vault.example:8443 --token "+tok) {
		t.Fatalf("create output:\n%s", r.stdout)
	}
	if r := cofferd(t, dir, "tenant", "create", "acme"); r.code != 1 || !strings.Contains(r.stderr, `tenant name "acme" is taken`) {
		t.Fatalf("duplicate: %+v", r)
	}
	for _, bad := range [][]string{{"tenant", "create", "Bad_Name"}, {"tenant", "create", "x", "--quota", "lots"}, {"tenant", "create"}, {"tenant", "show"}, {"tenant", "nope"}} {
		if r := cofferd(t, dir, bad...); r.code != 2 {
			t.Errorf("%v: exit %d, %s", bad, r.code, r.stderr)
		}
	}
	r = cofferd(t, dir, "--json", "tenant", "create", "beta", "--token-ttl", "1h")
	var created struct {
		Tenant vaultapi.TenantInfo `json:"tenant"`
		Token  string              `json:"token"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &created) != nil || !tokenRE.MatchString(created.Token) || created.Tenant.Name != "beta" {
		t.Fatalf("create --json: %+v", r)
	}

	r = cofferd(t, dir, "--json", "tenant", "list")
	var list []vaultapi.TenantInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 2 || list[0].Name != "acme" || list[0].Quota != 1<<30 {
		t.Fatalf("list: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "list"); r.code != 0 || !strings.Contains(r.stdout, "acme") || !strings.Contains(r.stdout, "1.00 GiB") {
		t.Fatalf("list: %+v", r)
	}

	r = cofferd(t, dir, "tenant", "set-quota", "acme", "500MiB")
	if r.code != 0 || !strings.Contains(r.stdout, "quota:     500.00 MiB") {
		t.Fatalf("set-quota: %+v", r)
	}
	r = cofferd(t, dir, "tenant", "suspend", created.Tenant.ID, "--reason", "unpaid invoice")
	if r.code != 0 || !strings.Contains(r.stdout, "suspended since") || !strings.Contains(r.stdout, "unpaid invoice") {
		t.Fatalf("suspend: %+v", r)
	}
	r = cofferd(t, dir, "--json", "tenant", "show", "beta")
	var info vaultapi.TenantInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &info) != nil || info.State != vaultapi.StateSuspended {
		t.Fatalf("show: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "resume", "beta"); r.code != 0 || !strings.Contains(r.stdout, "state:     active") {
		t.Fatalf("resume: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "show", "nobody"); r.code != 1 || !strings.Contains(r.stderr, `no tenant named "nobody"`) {
		t.Fatalf("show nobody: %+v", r)
	}

	r = cofferd(t, dir, "tenant", "token", "acme")
	tok2 := tokenRE.FindString(r.stdout)
	if r.code != 0 || tok2 == "" || tok2 == tok {
		t.Fatalf("token: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "credentials", "acme"); r.code != 0 || !strings.Contains(r.stdout, "CREDENTIAL") {
		t.Fatalf("credentials: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "revoke", "acme", "000000000000000000000000"); r.code != 1 {
		t.Fatalf("revoke unknown: %+v", r)
	}
}

func TestOpenStateRefusesVaultURL(t *testing.T) {
	if r := run(context.Background(), []string{"--store", "https://vault.example", "tenant", "list"}, &bytes.Buffer{}, &bytes.Buffer{}); r != 2 {
		t.Fatalf("exit %d", r)
	}
}

func TestServeHookAndEnrollWithPrintedToken(t *testing.T) {
	saved := serveCommand
	defer func() { serveCommand = saved }()
	var gotG *globals
	serveCommand = func(g *globals) *cobra.Command {
		return &cobra.Command{Use: "serve", RunE: func(c *cobra.Command, _ []string) error {
			gotG = g
			s, reg, l, err := g.openState(c.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			if reg == nil || l == nil {
				t.Error("openState returned nil parts")
			}
			return nil
		}}
	}
	dir := t.TempDir()
	if r := cofferd(t, dir, "serve"); r.code != 0 || gotG == nil || gotG.storeURL != "file://"+dir {
		t.Fatalf("serve hook: %+v", r)
	}

	r := cofferd(t, dir, "tenant", "create", "acme")
	tok := tokenRE.FindString(r.stdout)
	g := &globals{storeURL: "file://" + dir, clock: clock.Real, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s, reg, _, err := g.openState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, id, sha, _ := vaultapi.NewCredential()
	if _, _, err := reg.Enroll(context.Background(), vaultapi.EnrollRequest{Token: vaultapi.Secret(tok), CredentialID: id,
		CredentialSHA256: hex.EncodeToString(sha[:]), Host: "xen1"}); err != nil {
		t.Fatal(err)
	}
	if r := cofferd(t, dir, "tenant", "credentials", "acme"); r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "xen1") {
		t.Fatalf("credentials: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "revoke", "acme", id); r.code != 0 {
		t.Fatalf("revoke: %+v", r)
	}
	if r := cofferd(t, dir, "--json", "tenant", "credentials", "acme"); r.code != 0 || !strings.Contains(r.stdout, `"revoked"`) {
		t.Fatalf("credentials after revoke: %+v", r)
	}
}

// No quota is written "unlimited" (or "none") and shown so; a quota of 0,
// which used to mean no quota, is refused with what to write instead.
func TestQuotaUnlimited(t *testing.T) {
	dir := t.TempDir()
	for _, q := range []string{"0", "0B", "0 GiB"} {
		r := cofferd(t, dir, "tenant", "create", "acme", "--quota", q)
		if r.code != exitUsage || !strings.Contains(r.stderr, "for no quota write unlimited") {
			t.Fatalf("--quota %q: %+v", q, r)
		}
	}
	if r := cofferd(t, dir, "tenant", "list"); !strings.Contains(r.stdout, "no tenants yet") {
		t.Fatalf("a refused create stored a tenant: %+v", r)
	}
	r := cofferd(t, dir, "tenant", "create", "acme", "--quota", "unlimited")
	if r.code != 0 || !strings.Contains(r.stdout, "quota: unlimited") {
		t.Fatalf("create unlimited: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "create", "beta"); r.code != 0 || !strings.Contains(r.stdout, "quota: unlimited") {
		t.Fatalf("create with the default quota: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "set-quota", "acme", "2GiB"); r.code != 0 || !strings.Contains(r.stdout, "quota:     2.00 GiB") {
		t.Fatalf("set-quota 2GiB: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "set-quota", "acme", "0"); r.code != exitUsage || !strings.Contains(r.stderr, "unlimited") {
		t.Fatalf("set-quota 0: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "show", "acme"); !strings.Contains(r.stdout, "quota:     2.00 GiB") {
		t.Fatalf("set-quota 0 changed the quota: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "set-quota", "acme", "none"); r.code != 0 || !strings.Contains(r.stdout, "quota:     unlimited") {
		t.Fatalf("set-quota none: %+v", r)
	}
	r = cofferd(t, dir, "--json", "tenant", "list")
	var list []vaultapi.TenantInfo
	if json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 2 || !list[0].QuotaUnlimited || list[0].Quota != 0 {
		t.Fatalf("list --json: %+v", r)
	}
	if r := cofferd(t, dir, "tenant", "list"); !strings.Contains(r.stdout, "unlimited") || strings.Contains(r.stdout, "none") {
		t.Fatalf("list: %+v", r)
	}
}

// tenant show and list label what agents reported apart from what the
// vault measured.
func TestTenantShowLabelsReportedUsage(t *testing.T) {
	dir := t.TempDir()
	cofferd(t, dir, "tenant", "create", "acme")
	ctx := context.Background()
	g := &globals{storeURL: "file://" + dir, clock: clock.Real}
	data, reg, led, err := g.openState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	ten, _ := reg.Resolve(ctx, "acme")
	name := "snapshots/" + strings.Repeat("ab", 32)
	res, err := led.Reserve(ctx, ten, name, vaultapi.KindSnapshot, 1<<20, ledger.Meta{LogicalBytes: 10 << 30, DataBytes: 3 << 30}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := cofferd(t, dir, "tenant", "show", "acme")
	for _, want := range []string{"measured by the vault:\n    stored:    1.00 MiB in 1 objects", "reported by agents (not measured, not billed):\n    logical:   10.00 GiB, 10240.0x the stored bytes\n    data:      3.00 GiB"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = cofferd(t, dir, "tenant", "list")
	if !strings.Contains(r.stdout, "LOGICAL (REPORTED)") || !strings.Contains(r.stdout, "10.00 GiB") || !strings.Contains(r.stdout, "what agents reported (not measured, not billed)") {
		t.Errorf("list:\n%s", r.stdout)
	}
	r = cofferd(t, dir, "--json", "tenant", "list")
	var list []struct {
		Usage map[string]json.RawMessage `json:"usage"`
	}
	var rep vaultapi.ReportedUsage
	if json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 1 || list[0].Usage["logical_bytes"] != nil ||
		json.Unmarshal(list[0].Usage["reported_by_agents"], &rep) != nil || rep.LogicalBytes != 10<<30 {
		t.Errorf("list --json: %s", r.stdout)
	}
}
