package cli

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestExitCode(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	bg := context.Background()
	cases := []struct {
		name  string
		ctx   context.Context
		err   error
		code  int
		known bool
	}{
		{"success", bg, nil, ExitOK, true},
		{"interrupted", cancelled, errors.New("read: interrupted"), ExitInterrupted, true},
		{"cancel error", bg, fmt.Errorf("upload: %w", context.Canceled), ExitInterrupted, true},
		{"usage", bg, fmt.Errorf("flags: %w", UsageError{errors.New("bad flag")}), ExitUsage, true},
		{"other", bg, errors.New("disk full"), ExitFailure, false},
	}
	for _, c := range cases {
		code, known := ExitCode(c.ctx, c.err)
		if code != c.code || known != c.known {
			t.Errorf("%s: ExitCode = %d, %v; want %d, %v", c.name, code, known, c.code, c.known)
		}
	}
	if got := (UsageError{errors.New("needs --image")}).Error(); got != "needs --image" {
		t.Errorf("UsageError text %q", got)
	}
}
