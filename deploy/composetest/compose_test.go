package composetest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// Values the tests put in the environment; they must never show up in the
// loaded project outside an environment variable.
const (
	sentinelUser     = "sentinel-user-4f1c"
	sentinelPassword = "sentinel-password-9b2e77"
)

// requiredEnv is every variable docker-compose.yml refuses to run without.
var requiredEnv = []string{"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}

func testEnv(extra ...string) []string {
	return append([]string{"MINIO_ROOT_USER=" + sentinelUser, "MINIO_ROOT_PASSWORD=" + sentinelPassword}, extra...)
}

// load parses docker-compose.yml the way `docker compose` does, with env as
// the only environment (no OS environment, no .env file).
func load(t *testing.T, env []string, opts ...cli.ProjectOptionsFn) (*types.Project, error) {
	t.Helper()
	root := repoRoot(t)
	opts = append([]cli.ProjectOptionsFn{cli.WithWorkingDirectory(root), cli.WithEnv(env), cli.WithName("coffer")}, opts...)
	o, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")}, opts...)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	return o.LoadProject(context.Background())
}

func mustLoad(t *testing.T, env ...string) *types.Project {
	t.Helper()
	p, err := load(t, testEnv(env...))
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

func env(s types.ServiceConfig, key string) string {
	if v, ok := s.Environment[key]; ok && v != nil {
		return *v
	}
	return ""
}

func TestComposeServices(t *testing.T) {
	p := mustLoad(t)
	names := p.ServiceNames()
	slices.Sort(names)
	if want := []string{"cofferd", "createbucket", "minio"}; !slices.Equal(names, want) {
		t.Fatalf("services %v, want %v", names, want)
	}
	if p.Name != "coffer" {
		t.Errorf("project name %q, want coffer", p.Name)
	}

	deps := []struct{ svc, on, cond string }{
		{"createbucket", "minio", types.ServiceConditionHealthy},
		{"cofferd", "createbucket", types.ServiceConditionCompletedSuccessfully},
	}
	for _, d := range deps {
		s := service(t, p, d.svc)
		dep, ok := s.DependsOn[d.on]
		if !ok {
			t.Errorf("%s does not depend on %s", d.svc, d.on)
			continue
		}
		if dep.Condition != d.cond {
			t.Errorf("%s depends on %s with condition %q, want %q", d.svc, d.on, dep.Condition, d.cond)
		}
	}

	// Images are pinned to a release, never latest.
	for _, name := range []string{"minio", "createbucket"} {
		img := service(t, p, name).Image
		if !regexp.MustCompile(`^quay\.io/minio/(minio|mc):RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ$`).MatchString(img) {
			t.Errorf("%s image %q is not pinned to a MinIO release tag", name, img)
		}
	}

	for name, s := range p.Services {
		if name == "createbucket" {
			if s.HealthCheck != nil && !s.HealthCheck.Disable {
				t.Errorf("createbucket is one-shot and needs no healthcheck")
			}
			if s.Restart != "" && s.Restart != "no" {
				t.Errorf("createbucket restart %q: a one-shot service must not restart", s.Restart)
			}
			continue
		}
		if s.HealthCheck == nil || len(s.HealthCheck.Test) < 2 || s.HealthCheck.Test[0] != "CMD" {
			t.Errorf("%s: healthcheck %v, want an exec-form [CMD ...] test", name, s.HealthCheck)
		}
	}
	if hc := service(t, p, "cofferd").HealthCheck; hc != nil && !strings.Contains(strings.Join(hc.Test, " "), "/healthz") {
		t.Errorf("cofferd healthcheck %v does not probe /healthz", hc.Test)
	}

	// Only cofferd is reachable from outside; MinIO stays on the compose network.
	for name, s := range p.Services {
		if name != "cofferd" && len(s.Ports) > 0 {
			t.Errorf("%s publishes ports %v; only cofferd should", name, s.Ports)
		}
	}
	cd := service(t, p, "cofferd")
	if len(cd.Ports) != 1 || cd.Ports[0].Target != 8443 {
		t.Errorf("cofferd ports %+v, want one port with target 8443", cd.Ports)
	}
	if got := flagValue(cd.Command, "listen"); got != ":8443" {
		t.Errorf("cofferd --listen %q, want :8443 (the published port's target)", got)
	}
}

var mcMakeBucket = regexp.MustCompile(`mc mb (?:--ignore-existing )?local/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\s|$)`)
var mcAlias = regexp.MustCompile(`mc alias set local (http://\S+) `)

// The bucket cofferd uses is the one createbucket makes, on the minio service.
func TestComposeBucket(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    []string
		bucket string
	}{
		{"default", nil, "coffer-vault"},
		{"COFFER_BUCKET set", []string{"COFFER_BUCKET=msp-vault-2"}, "msp-vault-2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustLoad(t, tc.env...)
			mc := service(t, p, "createbucket")
			script := strings.Join(mc.Command, " ")
			m := mcMakeBucket.FindStringSubmatch(script)
			if m == nil {
				t.Fatalf("createbucket command has no `mc mb local/BUCKET`: %q", script)
			}
			made := m[1]
			if !strings.Contains(script, "--ignore-existing") {
				t.Errorf("createbucket must be idempotent (mc mb --ignore-existing): %q", script)
			}
			alias := mcAlias.FindStringSubmatch(script)
			if alias == nil {
				t.Fatalf("createbucket command has no `mc alias set local URL`: %q", script)
			}
			aliasURL, err := url.Parse(alias[1])
			if err != nil {
				t.Fatalf("mc alias URL %q: %v", alias[1], err)
			}

			raw := env(service(t, p, "cofferd"), "COFFER_STORE")
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("COFFER_STORE %q: %v", raw, err)
			}
			if u.Scheme != "s3" {
				t.Fatalf("COFFER_STORE %q: scheme %q, want s3", raw, u.Scheme)
			}
			bucket, _, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
			if bucket != made || bucket != tc.bucket {
				t.Errorf("COFFER_STORE bucket %q, createbucket makes %q, want both %q", bucket, made, tc.bucket)
			}
			if u.Host != aliasURL.Host {
				t.Errorf("COFFER_STORE host %q, createbucket talks to %q", u.Host, aliasURL.Host)
			}
			if h := u.Hostname(); p.Services[h].Name != h {
				t.Errorf("COFFER_STORE host %q is not a service of this project", h)
			}
			if u.Port() != "9000" {
				t.Errorf("COFFER_STORE port %q, want MinIO's API port 9000", u.Port())
			}
			if q := u.Query().Get("tls"); q != "false" {
				t.Errorf("COFFER_STORE %q: MinIO here speaks plain HTTP, want tls=false", raw)
			}
		})
	}
}

func TestComposeCofferdHardening(t *testing.T) {
	p := mustLoad(t)
	s := service(t, p, "cofferd")
	if !s.ReadOnly {
		t.Error("cofferd: read_only is not set")
	}
	if !slices.Equal(s.CapDrop, []string{"ALL"}) {
		t.Errorf("cofferd cap_drop %v, want [ALL]", s.CapDrop)
	}
	if len(s.CapAdd) != 0 {
		t.Errorf("cofferd cap_add %v, want none", s.CapAdd)
	}
	if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("cofferd security_opt %v lacks no-new-privileges:true", s.SecurityOpt)
	}
	if s.Privileged {
		t.Error("cofferd is privileged")
	}
	if u := s.User; u == "root" || u == "0" || strings.HasPrefix(u, "0:") {
		t.Errorf("cofferd runs as user %q", u)
	}
	if s.NetworkMode == "host" {
		t.Error("cofferd uses the host network")
	}
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && !v.ReadOnly {
			t.Errorf("cofferd bind-mounts %s writable", v.Source)
		}
	}
}

// TLS material reaches cofferd as compose secrets, and the paths it is told
// to read are exactly where compose puts them.
func TestComposeTLS(t *testing.T) {
	p := mustLoad(t)
	s := service(t, p, "cofferd")
	mounted := map[string]bool{}
	for _, sec := range s.Secrets {
		target := sec.Target
		if target == "" {
			target = sec.Source
		}
		if !strings.HasPrefix(target, "/") {
			target = "/run/secrets/" + target
		}
		mounted[target] = true
		if _, ok := p.Secrets[sec.Source]; !ok {
			t.Errorf("cofferd uses secret %q, which the project does not define", sec.Source)
		}
	}
	for _, f := range []string{"tls-cert", "tls-key"} {
		v := flagValue(s.Command, f)
		if v == "" {
			t.Errorf("cofferd command %v has no --%s", s.Command, f)
			continue
		}
		if !mounted[v] {
			t.Errorf("cofferd --%s %s is not a mounted secret (mounted: %v)", f, v, mounted)
		}
	}
	if slices.Contains(s.Command, "--allow-plain-http") {
		t.Error("cofferd in compose must serve TLS, not --allow-plain-http")
	}
}

// Every file the compose file refers to exists, or is user-provided: listed
// in deploy/tls/README.md, kept out of git and out of the image build.
func TestComposeFiles(t *testing.T) {
	root := repoRoot(t)
	p := mustLoad(t)
	rel := func(path string) string {
		r, err := filepath.Rel(root, path)
		if err != nil || strings.HasPrefix(r, "..") {
			t.Errorf("%s is outside the repository", path)
			return path
		}
		return filepath.ToSlash(r)
	}

	s := service(t, p, "cofferd")
	if s.Build == nil {
		t.Fatal("cofferd has no build section")
	}
	if got := rel(s.Build.Context); got != "." {
		t.Errorf("cofferd build context %q, want the repository root", got)
	}
	dockerfile := s.Build.Dockerfile
	if !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(s.Build.Context, dockerfile)
	}
	if got := rel(dockerfile); got != "deploy/Dockerfile" {
		t.Errorf("cofferd dockerfile %q, want deploy/Dockerfile", got)
	}
	if _, err := os.Stat(dockerfile); err != nil {
		t.Errorf("cofferd dockerfile: %v", err)
	}

	userProvided := readFile(t, "deploy/tls/README.md")
	gitignore := readFile(t, "deploy/tls/.gitignore")
	dockerignore := readFile(t, "deploy/Dockerfile.dockerignore")
	if len(p.Secrets) == 0 {
		t.Error("the project defines no secrets (TLS certificate and key)")
	}
	for name, sec := range p.Secrets {
		if sec.File == "" {
			t.Errorf("secret %s is not file-based", name)
			continue
		}
		r := rel(sec.File)
		if _, err := os.Stat(sec.File); err == nil {
			continue
		}
		if !strings.HasPrefix(r, "deploy/tls/") || !strings.Contains(userProvided, "`"+filepath.Base(r)+"`") {
			t.Errorf("secret %s: %s does not exist and is not documented as user-provided in deploy/tls/README.md", name, r)
		}
		if !strings.Contains(gitignore, "*\n") {
			t.Errorf("deploy/tls/.gitignore does not keep %s out of git", r)
		}
	}
	for _, line := range []string{"deploy/tls", ".env", ".git"} {
		if !slices.Contains(strings.Split(dockerignore, "\n"), line) {
			t.Errorf("deploy/Dockerfile.dockerignore does not exclude %s from the build context", line)
		}
	}
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind {
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("cofferd mounts %s: %v", v.Source, err)
			}
		}
	}
}

var fromLine = regexp.MustCompile(`(?m)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$`)
var userLine = regexp.MustCompile(`(?m)^USER\s+(\S+)\s*$`)

func TestDockerfile(t *testing.T) {
	df := readFile(t, "deploy/Dockerfile")
	froms := fromLine.FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatalf("deploy/Dockerfile has %d stages, want a build stage and a runtime stage", len(froms))
	}
	build, runtime := froms[0], froms[len(froms)-1]
	if !strings.HasPrefix(build[1], "golang:") || build[2] == "" {
		t.Errorf("first stage %q: want a named golang build stage", build[0])
	}
	if strings.HasPrefix(runtime[1], "golang:") {
		t.Errorf("runtime stage %q is the Go toolchain image", runtime[0])
	}
	if !strings.Contains(df, "COPY --from="+build[2]+" ") {
		t.Errorf("the runtime stage does not copy the binary from stage %q", build[2])
	}
	if !strings.Contains(df, "CGO_ENABLED=1") {
		t.Error("deploy/Dockerfile does not build with CGO_ENABLED=1 (the module's zstd needs cgo)")
	}
	if !strings.Contains(df, "./cmd/cofferd") {
		t.Error("deploy/Dockerfile does not build ./cmd/cofferd")
	}
	// Only the runtime stage's last USER counts.
	users := userLine.FindAllStringSubmatch(df[strings.LastIndex(df, runtime[0]):], -1)
	if len(users) == 0 {
		t.Fatal("the runtime stage sets no USER; it would run as root")
	}
	if u := users[len(users)-1][1]; u == "root" || u == "0" || strings.HasPrefix(u, "0:") {
		t.Errorf("runtime stage USER %s is root", u)
	}
	m := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindStringSubmatch(df)
	gomod := readFile(t, "go.mod")
	if m == nil || !strings.Contains(gomod, "\ngo "+m[1]+"\n") {
		t.Errorf("deploy/Dockerfile GO_VERSION %v does not match go.mod's go line", m)
	}
}

// Secrets come from the environment (.env), never from the file itself.
func TestComposeNoLiteralSecrets(t *testing.T) {
	raw := readFile(t, "docker-compose.yml")
	for _, bad := range []string{"minioadmin", "changeme", "password123", "BEGIN PRIVATE KEY", "BEGIN EC PRIVATE KEY"} {
		if strings.Contains(strings.ToLower(raw), strings.ToLower(bad)) {
			t.Errorf("docker-compose.yml contains %q", bad)
		}
	}

	// The model before interpolation: every secret-like variable is exactly
	// ${VAR:?message}, so a missing value stops compose instead of defaulting.
	o, err := cli.NewProjectOptions([]string{filepath.Join(repoRoot(t), "docker-compose.yml")},
		cli.WithWorkingDirectory(repoRoot(t)), cli.WithEnv(nil), cli.WithInterpolation(false))
	if err != nil {
		t.Fatal(err)
	}
	model, err := o.LoadModel(context.Background())
	if err != nil {
		t.Fatalf("load model: %v", err)
	}
	secretName := regexp.MustCompile(`(?i)(SECRET|PASSWORD|PASSWD|TOKEN|ACCESS_KEY|PRIVATE|_USER$|CREDENTIAL)`)
	required := regexp.MustCompile(`^\$\{([A-Z][A-Z0-9_]*):\?[^}]+\}$`)
	services, _ := model["services"].(map[string]any)
	checked := 0
	for name, svc := range services {
		m, _ := svc.(map[string]any)
		envs, _ := m["environment"].(map[string]any)
		for k, v := range envs {
			if !secretName.MatchString(k) {
				continue
			}
			checked++
			s := fmt.Sprint(v)
			if !required.MatchString(s) {
				t.Errorf("%s: environment %s = %q; a secret must be ${VAR:?message}", name, k, s)
			}
		}
	}
	if checked < 4 {
		t.Errorf("found only %d secret-like environment variables; the check is not looking where it should", checked)
	}

	// After interpolation the test's values appear only as environment
	// values, never in commands, healthchecks, labels or image names.
	p := mustLoad(t)
	for name, s := range p.Services {
		var places []string
		places = append(places, s.Command...)
		places = append(places, s.Entrypoint...)
		if s.HealthCheck != nil {
			places = append(places, s.HealthCheck.Test...)
		}
		for k, v := range s.Labels {
			places = append(places, k, v)
		}
		places = append(places, s.Image)
		for _, pl := range places {
			if strings.Contains(pl, sentinelPassword) || strings.Contains(pl, sentinelUser) {
				t.Errorf("%s: a secret from .env is interpolated into %q", name, pl)
			}
		}
	}
}

// Without the required variables compose refuses, saying which one to set.
func TestComposeRequiresEnv(t *testing.T) {
	for _, missing := range requiredEnv {
		t.Run(missing, func(t *testing.T) {
			var env []string
			for _, e := range testEnv() {
				if !strings.HasPrefix(e, missing+"=") {
					env = append(env, e)
				}
			}
			_, err := load(t, env)
			if err == nil {
				t.Fatalf("docker-compose.yml loaded without %s", missing)
			}
			want := "set " + missing + " in .env"
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not say %q", err, want)
			}
		})
	}
	t.Run("empty", func(t *testing.T) {
		// ${VAR:?} also refuses a variable that is set but empty.
		_, err := load(t, []string{"MINIO_ROOT_USER=u", "MINIO_ROOT_PASSWORD="})
		if err == nil || !strings.Contains(err.Error(), "set MINIO_ROOT_PASSWORD in .env") {
			t.Fatalf("empty MINIO_ROOT_PASSWORD: err %v", err)
		}
	})
}

// Every flag the compose file gives cofferd is one cofferd knows.
func TestComposeCofferdFlags(t *testing.T) {
	p := mustLoad(t)
	s := service(t, p, "cofferd")
	if len(s.Command) == 0 || s.Command[0] != "serve" {
		t.Fatalf("cofferd command %v, want serve ...", s.Command)
	}
	checkFlags(t, "docker-compose.yml cofferd command", []string{"serve"}, s.Command[1:])
	hc := s.HealthCheck.Test[1:] // after "CMD"
	if len(hc) < 2 || hc[0] != "cofferd" || hc[1] != "health" {
		t.Fatalf("cofferd healthcheck %v, want cofferd health ...", hc)
	}
	checkFlags(t, "docker-compose.yml cofferd healthcheck", []string{"health"}, hc[2:])
	// The healthcheck probes the metrics listener on loopback.
	u, err := url.Parse(flagValue(hc, "url"))
	if err != nil {
		t.Fatal(err)
	}
	_, metricsPort, _ := strings.Cut(flagValue(s.Command, "metrics-listen"), ":")
	if u.Hostname() != "127.0.0.1" || u.Port() != metricsPort || u.Path != "/healthz" {
		t.Errorf("healthcheck URL %s, want http://127.0.0.1:%s/healthz (the --metrics-listen port)", u, metricsPort)
	}
	// The README's onboarding step.
	knownFlags(t, "tenant", "create")
}

// The README's walkthrough names what the compose file and the unit need.
func TestReadmeSection(t *testing.T) {
	readme := readFile(t, "README.md")
	start := strings.Index(readme, "## Running the vault (docker compose or systemd)")
	if start < 0 {
		t.Fatal(`README.md has no "Running the vault (docker compose or systemd)" section`)
	}
	sec := readme[start:]
	if end := strings.Index(sec[3:], "\n## "); end >= 0 {
		sec = sec[:end+3]
	}
	want := append([]string{
		"docker compose up -d",
		"docker compose exec cofferd cofferd tenant create acme",
		"coffer init --repo https://vault.example:8443 --token",
		"deploy/tls/key.pem", "deploy/tls/cert.pem",
		"deploy/cofferd.env.example", "/etc/coffer/cofferd.env",
		"deploy/cofferd.service", "COFFER_BUCKET",
	}, requiredEnv...)
	for _, w := range want {
		if !strings.Contains(sec, w) {
			t.Errorf("the README section does not mention %q", w)
		}
	}
}
