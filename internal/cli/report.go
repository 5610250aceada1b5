package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"

	"github.com/cofferhq/coffer/internal/termtext"
)

// Exit codes only the agent uses today; their kinds are shared so that
// both commands' JSON errors speak one vocabulary.
const (
	ExitPartial         = 3
	ExitNoRepository    = 10
	ExitWrongPassphrase = 12
)

// kinds names each documented exit code in JSON errors.
var kinds = map[int]string{
	ExitFailure:         "failure",
	ExitUsage:           "usage",
	ExitPartial:         "partial",
	ExitNoRepository:    "no_repository",
	ExitWrongPassphrase: "wrong_passphrase",
	ExitInterrupted:     "interrupted",
}

// Kind is the JSON name of an exit code ("failure" for an unknown one).
func Kind(code int) string {
	if k, ok := kinds[code]; ok {
		return k
	}
	return kinds[ExitFailure]
}

// ErrorBody is the one error object both commands print on stderr under
// --json (README.md, "JSON output").
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong: the message a human would read, the
// exit code and its kind.
type ErrorDetail struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
	Kind    string `json:"kind"`
}

// Report prints err, which ends the command with code, on w: one JSON
// error object under --json, else "prog: message" and, for misuse, where
// to find the usage. kind names the error's class ("" means Kind(code));
// interrupted replaces the message of an interruption.
func Report(w io.Writer, prog string, err error, code int, kind string, asJSON bool, interrupted string) {
	msg := err.Error()
	if code == ExitInterrupted {
		msg = interrupted
	}
	if kind == "" {
		kind = Kind(code)
	}
	if asJSON {
		b, _ := json.Marshal(ErrorBody{ErrorDetail{Message: msg, Code: code, Kind: kind}})
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	// Messages carry text from the store, the vault and other parties:
	// terminal-safe (JSON escapes it already).
	fmt.Fprintf(w, "%s: %s\n", prog, termtext.CleanLines(msg))
	if code == ExitUsage {
		fmt.Fprintf(w, "Run '%s --help' for usage.\n", prog)
	}
}

// WantsJSON reports whether a command asked for JSON: the parsed flag, or,
// when a flag error stopped parsing before --json was read, the raw args.
func WantsJSON(flag bool, args []string) bool {
	return flag || slices.Contains(args, "--json") || slices.Contains(args, "--json=true")
}
