package main

import (
	"context"
	"errors"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/cli"
)

// Exit codes, as the agent's (README.md, "Exit codes").
const (
	exitOK          = cli.ExitOK
	exitFailure     = cli.ExitFailure
	exitUsage       = cli.ExitUsage
	exitInterrupted = cli.ExitInterrupted
	// exitNoVault: the store holds no vault (as the agent's 10, "no
	// repository at the given location").
	exitNoVault = 10
)

// usageError marks errors in how the command was called.
type usageError = cli.UsageError

// exitCode maps an error to its exit code.
func exitCode(ctx context.Context, err error) int {
	code, known := cli.ExitCode(ctx, err)
	var nv *noVaultError
	switch {
	case known:
	case errors.As(err, &nv):
		return exitNoVault
	case errors.Is(err, crypto.ErrEscrowIdentity), errors.Is(err, crypto.ErrWrongPassphrase):
		return cli.ExitWrongPassphrase
	}
	return code
}
