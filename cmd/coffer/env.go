package main

import (
	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/vaultclient"
)

// The agent's environment variables that are not named elsewhere.
const (
	EnvConfig       = "COFFER_CONFIG"
	EnvRepository   = "COFFER_REPOSITORY"
	EnvPassword     = "COFFER_PASSWORD"
	EnvPasswordFile = "COFFER_PASSWORD_FILE"
	EnvNewPassword  = "COFFER_NEW_PASSWORD"
)

// environment is every environment variable coffer reads: the one table,
// shown by --help and in README.md ("Environment variables"); a test keeps
// the three in step.
var environment = []cli.EnvVar{
	{Name: EnvConfig, What: "the agent config file (--config)"},
	{Name: EnvRepository, What: "the repository URL, overriding the config file (--repo)"},
	{Name: EnvPassword, What: "the passphrase (else --password-file or a prompt)"},
	{Name: EnvPasswordFile, What: "a file holding the passphrase (--password-file)"},
	{Name: EnvNewPassword, What: "the new passphrase for key passwd"},
	{Name: EnvEnrollToken, What: "the one-time enrollment token for init with a vault"},
	{Name: vaultclient.EnvCredential, What: "the agent credential for a vault, overriding the config file"},
	{Name: vaultclient.EnvVaultCA, What: "CA certificates to trust for the vault (--vault-ca)"},
	{Name: vaultclient.EnvDirectDownloads, What: "off: read every object through the vault, never from its store directly"},
	{Name: EnvRetryPatience, What: "how long to keep retrying a vault or store that is away (--retry-patience)"},
	{Name: storeurl.EnvAccessKey, What: "S3 access key for s3:// repositories"},
	{Name: storeurl.EnvSecretKey, What: "S3 secret key for s3:// repositories"},
	{Name: storeurl.EnvSessionToken, What: "S3 session token, if any"},
}
