package cli

import (
	"context"
	"errors"
)

// Exit codes both commands use (README.md, "Exit codes").
const (
	ExitOK          = 0
	ExitFailure     = 1
	ExitUsage       = 2
	ExitInterrupted = 130
)

// UsageError marks an error in how a command was called.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// ExitCode maps the outcomes every command shares: success, interruption
// (a cancelled context) and misuse. For any other error it reports false,
// and the command decides (ExitFailure unless it knows better).
func ExitCode(ctx context.Context, err error) (int, bool) {
	var ue UsageError
	switch {
	case err == nil:
		return ExitOK, true
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return ExitInterrupted, true
	case errors.As(err, &ue):
		return ExitUsage, true
	}
	return ExitFailure, false
}
