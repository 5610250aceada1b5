package main

import (
	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/storeurl"
)

// environment is every environment variable cofferd reads: the one table,
// shown by --help and in README.md ("Environment variables"); a test keeps
// the three in step.
var environment = []cli.EnvVar{
	{Name: EnvStore, What: "the vault's store (--store)"},
	{Name: EnvVaultURL, What: "the vault URL printed in enrollment instructions"},
	{Name: EnvObjectLock, What: "lock tenants' objects as they are stored: governance or compliance (--object-lock)"},
	{Name: EnvObjectLockDays, What: "days a new object stays locked (--object-lock-days)"},
	{Name: storeurl.EnvAccessKey, What: "S3 access key for an s3:// store"},
	{Name: storeurl.EnvSecretKey, What: "S3 secret key for an s3:// store"},
	{Name: storeurl.EnvSessionToken, What: "S3 session token, if any"},
}
