package main

import (
	"context"

	"github.com/cofferhq/coffer/internal/cli"
)

// Exit codes, as the agent's (README.md, "Exit codes").
const (
	exitOK          = cli.ExitOK
	exitFailure     = cli.ExitFailure
	exitUsage       = cli.ExitUsage
	exitInterrupted = cli.ExitInterrupted
)

// usageError marks errors in how the command was called.
type usageError = cli.UsageError

// exitCode maps an error to its exit code.
func exitCode(ctx context.Context, err error) int {
	code, _ := cli.ExitCode(ctx, err)
	return code
}
