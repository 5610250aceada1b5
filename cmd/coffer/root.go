package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cofferhq/coffer/agent"
	"github.com/cofferhq/coffer/internal/buildinfo"
	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// globals are the flags every command takes.
type globals struct {
	// lostSeeds are the tenant's cancelled seeds, learned by loadIndex.
	lostSeeds    []lostSeed
	configPath   string
	repoURL      string
	passwordFile string
	json         bool
	quiet        bool
	profile      cli.Profile
	vaultCA      string
	// retryPatience is --retry-patience (vault.go, retryPolicy).
	retryPatience string
	noKeyCache    bool

	stdout, stderr io.Writer
	counting       *store.Counting
	retry          *store.Retry // the retry layer openStore made
	// bandwidth, when set, limits the stores openStore opens (coffer
	// agent's windows, coffer backup --limit-upload).
	bandwidth *store.Bandwidth
	// exporting is set by coffer seed export: the snapshots it writes go
	// into the seed, so they are not remembered as in the repository.
	exporting bool
}

// agentConfig is the agent's config file (coffer.yaml, mode 0600).
type agentConfig struct {
	Repository string `yaml:"repository"`
	// Credential is the agent credential for a vault (cfa1_…), made by
	// coffer init --token; COFFER_CREDENTIAL overrides it.
	Credential vaultapi.Secret `yaml:"credential,omitempty"`
	// Enrolled is set once the vault accepted Credential.
	Enrolled bool `yaml:"enrolled,omitempty"`
	// PendingCredential was sent to the vault with an enrollment token
	// that has not been accepted yet (or whose reply was lost): a retry
	// sends it again, and only once accepted does it replace Credential.
	PendingCredential vaultapi.Secret `yaml:"pending_credential,omitempty"`
	// EnrollTokenID is the ID (never the secret) of the token that
	// enrolled Credential: init again with that token enrolls nothing.
	EnrollTokenID string `yaml:"enroll_token_id,omitempty"`
	// VaultCA is a PEM file of CA certificates for the vault's TLS.
	VaultCA string `yaml:"vault_ca,omitempty"`
	// RetryPatience is how long to keep retrying a store or vault that
	// fails or is away (a duration: 10m, 1h); --retry-patience overrides.
	RetryPatience string `yaml:"retry_patience,omitempty"`
	// KeyCache false stops the agent keeping unlocked keys (unlock.go).
	KeyCache *bool `yaml:"key_cache,omitempty"`
	// Xen is the XenServer pool a nightly `coffer backup` backs up.
	Xen *xenConfig `yaml:"xen,omitempty"`
	// Config is coffer agent's part: schedule, sources, bandwidth,
	// retries, history (package agent).
	agent.Config `yaml:",inline"`
}

func defaultConfigPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "coffer.yaml"
	}
	return filepath.Join(dir, "coffer", "coffer.yaml")
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "coffer",
		Short:         "Coffer agent: encrypted, deduplicated backups of VM disks",
		Long:          "Coffer agent: encrypted, deduplicated backups of VM disks.\n\n" + cli.EnvHelp(environment),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{Err: err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.configPath, "config", envOr(EnvConfig, defaultConfigPath()), "agent config file (env COFFER_CONFIG)")
	pf.StringVar(&g.repoURL, "repo", os.Getenv(EnvRepository), "repository URL, overriding the config file: file:///dir, s3://host:port/bucket/prefix or https://vault-host[:port] (env COFFER_REPOSITORY)")
	pf.StringVar(&g.passwordFile, "password-file", os.Getenv(EnvPasswordFile), "read the passphrase from this file (env COFFER_PASSWORD_FILE; or set COFFER_PASSWORD)")
	pf.StringVar(&g.vaultCA, "vault-ca", os.Getenv(vaultclient.EnvVaultCA), "PEM file of CA certificates to trust for the vault (env COFFER_VAULT_CA; init saves it in the config)")
	pf.StringVar(&g.retryPatience, "retry-patience", os.Getenv(EnvRetryPatience), "how long to keep retrying a vault or store that fails or is away, e.g. 10m or 1h (env "+EnvRetryPatience+", config retry_patience; default 10m)")
	pf.BoolVar(&g.noKeyCache, "no-key-cache", false, "neither use nor keep the unlocked key in the config directory (also key_cache: false in the config)")
	pf.BoolVar(&g.json, "json", false, "machine-readable JSON output")
	pf.BoolVar(&g.quiet, "quiet", false, "print only errors")
	g.profile.AddFlag(pf)
	root.PersistentPreRunE = func(*cobra.Command, []string) error { return g.profile.Start() }
	root.AddCommand(newInitCmd(g), newBackupCmd(g), newSnapshotsCmd(g), newRestoreCmd(g), newCheckCmd(g), newKeyCmd(g), newDebugCmd(g), newVersionCmd(g))
	root.AddCommand(newDrillCmd(g), newAgentCmd(g), newSeedCmd(g))
	root.Version = buildinfo.Version()

	err := root.ExecuteContext(ctx)
	g.profile.Stop()

	if err != nil && strings.HasPrefix(err.Error(), "unknown command") || err != nil && strings.Contains(err.Error(), "accepts ") {
		err = usageError{Err: err}
	}
	code := exitCode(ctx, err)
	if err != nil {
		cli.Report(stderr, "coffer", err, code, "", cli.WantsJSON(g.json, args),
			"interrupted; nothing half-done is visible: run the same command again (a backup resumes where it stopped; a restore starts over)")
	}
	return code
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// loadConfig reads the agent config; a missing file is an empty config.
func (g *globals) loadConfig() (agentConfig, error) {
	var c agentConfig
	b, err := os.ReadFile(g.configPath)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("reading config %s: %w", g.configPath, err)
	}
	if err := agent.DecodeStrict(b, &c); err != nil {
		return c, usageError{Err: fmt.Errorf("config %s: %v", g.configPath, err)}
	}
	return c, nil
}

// repository returns the repository URL: --repo, else the config file.
func (g *globals) repository() (string, error) {
	if g.repoURL != "" {
		return g.repoURL, nil
	}
	c, err := g.loadConfig()
	if err != nil {
		return "", err
	}
	if c.Repository == "" {
		return "", usageError{Err: fmt.Errorf("no repository: pass --repo or run coffer init (config %s has none)", g.configPath)}
	}
	return c.Repository, nil
}

// openStore opens the store at url with the decorators every command uses
// (storeurl assembles them: counting below one retry layer).
func (g *globals) openStore(ctx context.Context, url string, create bool) (store.Store, error) {
	policy, err := g.retryPolicy()
	if err != nil {
		return nil, err
	}
	o := storeurl.Options{Create: create}
	if vaultURL(url) != nil {
		if o, err = g.vaultOptions(create); err != nil {
			return nil, err
		}
	}
	o.Retry = policy
	o.Bandwidth = g.bandwidth
	o.DirectFailure = func(err error) {
		g.warn(fmt.Sprintf("reading from the vault's store directly failed (%v); reading through the vault from now on", err))
	}
	st, err := storeurl.Open(ctx, url, o)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) && !create {
			return nil, fmt.Errorf("%w at %s (%v)", repo.ErrNoRepository, url, err)
		}
		return nil, err
	}
	g.counting, g.retry = st.Counting, st.Retry
	return g.retry, nil
}

// openRepo opens the repository: with the key this agent kept for it,
// else with the passphrase (unlock.go).
func (g *globals) openRepo(ctx context.Context) (*repo.Repo, error) {
	return g.openRepoWith(ctx, true)
}

// openRepoWith is openRepo; useKept false always asks for the passphrase.
func (g *globals) openRepoWith(ctx context.Context, useKept bool) (*repo.Repo, error) {
	url, err := g.repository()
	if err != nil {
		return nil, err
	}
	st, err := g.openStore(ctx, url, false)
	if err != nil {
		return nil, err
	}
	// Fail fast with exit 10 before asking for a passphrase.
	cfg, _, _, err := repo.ReadConfig(ctx, st)
	if err != nil {
		return nil, err
	}
	return g.unlockRepo(ctx, st, cfg, useKept)
}

// loadIndex loads the repository index, warning about index files it
// skips: junk (foreign) ones, saying who can remove them, and damaged ones
// (their packs are recovered from the pack headers). Through a vault it
// then forgets the packs of the tenant's cancelled seeds that never
// arrived (forgetLostSeeds).
func (g *globals) loadIndex(ctx context.Context, r *repo.Repo) error {
	if err := g.loadIndexFiles(ctx, r); err != nil {
		return err
	}
	return g.forgetLostSeeds(ctx, r)
}

// loadIndexFiles loads r's index, warning about files it skips.
func (g *globals) loadIndexFiles(ctx context.Context, r *repo.Repo) error {
	return r.LoadIndex(ctx, func(name string, err error) {
		if repo.IsForeign(err) {
			fmt.Fprintf(g.stderr, "coffer: warning: skipping %s: %s; %s\n", termtext.Clean(name), termtext.Clean(err.Error()), termtext.Clean(r.RemovalHint(name)))
			return
		}
		fmt.Fprintf(g.stderr, "coffer: warning: %s is damaged and was skipped; its packs are found from their headers (run coffer check): %s\n", termtext.Clean(name), termtext.Clean(err.Error()))
	})
}

// passphrase reads the passphrase from COFFER_PASSWORD, --password-file, or
// the terminal (twice when confirm is set). It never comes from argv.
func (g *globals) passphrase(prompt string, confirm bool) ([]byte, error) {
	return readSecret(EnvPassword, g.passwordFile, prompt, confirm, g.stderr)
}

func readSecret(env, file, prompt string, confirm bool, stderr io.Writer) ([]byte, error) {
	if v := os.Getenv(env); v != "" {
		return []byte(v), nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading the passphrase file: %w", err)
		}
		pw := []byte(strings.TrimRight(string(b), "\r\n"))
		if len(pw) == 0 {
			return nil, fmt.Errorf("the passphrase file %s is empty", file)
		}
		return pw, nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil, usageError{Err: fmt.Errorf("no passphrase: set %s or use --password-file (stdin is not a terminal)", env)}
	}
	fmt.Fprint(stderr, prompt)
	pw, err := term.ReadPassword(fd)
	fmt.Fprintln(stderr)
	if err != nil {
		return nil, err
	}
	if confirm {
		fmt.Fprint(stderr, "Repeat: ")
		pw2, err := term.ReadPassword(fd)
		fmt.Fprintln(stderr)
		if err != nil {
			return nil, err
		}
		if string(pw) != string(pw2) {
			return nil, errors.New("the passphrases do not match")
		}
	}
	if len(pw) == 0 {
		return nil, errors.New("empty passphrase")
	}
	return pw, nil
}

// printJSON writes v as one JSON line.
func (g *globals) printJSON(v any) {
	b, _ := json.Marshal(v)
	w := bufio.NewWriter(g.stdout)
	w.Write(b)
	w.WriteByte('\n')
	w.Flush()
}

// say prints a human line unless --quiet or --json.
func (g *globals) say(format string, a ...any) {
	if g.quiet || g.json {
		return
	}
	fmt.Fprintf(g.stdout, format+"\n", a...)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
