package main

import (
	"context"
	"errors"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/cli"
	"github.com/cofferhq/coffer/internal/repo"
)

// Exit codes (README.md, "Exit codes"): the shared ones of internal/cli,
// and the agent's own.
const (
	exitOK          = cli.ExitOK
	exitFailure     = cli.ExitFailure
	exitUsage       = cli.ExitUsage
	exitPartial     = cli.ExitPartial
	exitNoRepo      = cli.ExitNoRepository
	exitWrongPass   = cli.ExitWrongPassphrase
	exitInterrupted = cli.ExitInterrupted
)

// usageError marks errors in how the command was called.
type usageError = cli.UsageError

// exitCode maps an error to the documented exit code.
func exitCode(ctx context.Context, err error) int {
	if code, ok := cli.ExitCode(ctx, err); ok {
		return code
	}
	var pe partialError
	switch {
	case errors.As(err, &pe):
		return exitPartial
	case errors.Is(err, repo.ErrNoRepository):
		return exitNoRepo
	case errors.Is(err, crypto.ErrWrongPassphrase):
		return exitWrongPass
	}
	return exitFailure
}
