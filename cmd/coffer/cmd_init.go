package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/cofferhq/coffer/internal/repo"
)

func newInitCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init --repo URL",
		Short: "Create a repository and write the agent's config file",
		Long: `Create a new encrypted repository at --repo (file:///dir or
s3://host:port/bucket/prefix) with a fresh random master key, wrapped in a
key slot under your passphrase (COFFER_PASSWORD, --password-file, or a prompt).
The repository URL is saved in the config file (mode 0600) for later commands.
Keep the passphrase safe: without it the backups cannot be read by anyone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.repoURL == "" {
				return usageError{errors.New("init needs --repo URL")}
			}
			ctx := cmd.Context()
			if err := checkConfigWritable(g.configPath, g.repoURL); err != nil {
				return err
			}
			st, err := g.openStore(ctx, g.repoURL, true)
			if err != nil {
				return err
			}
			defer st.Close()
			pw, err := g.passphrase("New passphrase: ", true)
			if err != nil {
				return err
			}
			r, err := repo.Init(ctx, st, pw, repo.DefaultConfig())
			if err != nil {
				return err
			}
			if err := writeConfig(g.configPath, agentConfig{Repository: g.repoURL}); err != nil {
				return fmt.Errorf("the repository was created, but %w", err)
			}
			if g.json {
				g.printJSON(map[string]any{"type": "init", "repository": st.Location(), "id": r.Config().ID, "config": g.configPath})
				return nil
			}
			g.say("created repository %s at %s", r.Config().ID[:8], st.Location())
			g.say("wrote %s", g.configPath)
			g.say("keep your passphrase safe: without it nobody can read these backups")
			return nil
		},
	}
	return cmd
}

// checkConfigWritable refuses to replace a config that names another
// repository.
func checkConfigWritable(path, url string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var c agentConfig
	if yaml.Unmarshal(b, &c) == nil && (c.Repository == "" || c.Repository == url) {
		return nil
	}
	return usageError{fmt.Errorf("config %s already names repository %s; pass --config to write a new one elsewhere", path, c.Repository)}
}

// writeConfig writes the agent config atomically with mode 0600.
func writeConfig(path string, c agentConfig) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating the config directory: %w", err)
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append([]byte("# Coffer agent config. Keep it private (mode 0600).\n"), b...), 0o600); err != nil {
		return fmt.Errorf("writing config %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
