package main

import (
	"context"
	"errors"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/repo"
)

// Exit codes (README.md, "Exit codes").
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitPartial     = 3
	exitNoRepo      = 10
	exitWrongPass   = 12
	exitInterrupted = 130
)

// usageError marks errors in how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode maps an error to the documented exit code.
func exitCode(ctx context.Context, err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, repo.ErrNoRepository):
		return exitNoRepo
	case errors.Is(err, crypto.ErrWrongPassphrase):
		return exitWrongPass
	}
	return exitFailure
}
