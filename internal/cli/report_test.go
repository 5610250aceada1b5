package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestReportJSON(t *testing.T) {
	var b bytes.Buffer
	Report(&b, "coffer", errors.New(`no repository at "x"`), ExitNoRepository, "", true, "")
	if strings.Count(b.String(), "\n") != 1 {
		t.Fatalf("want one line, got %q", b.String())
	}
	var got ErrorBody
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := ErrorDetail{Message: `no repository at "x"`, Code: 10, Kind: "no_repository"}
	if got.Error != want {
		t.Fatalf("got %+v, want %+v", got.Error, want)
	}
}

func TestReportHuman(t *testing.T) {
	var b bytes.Buffer
	Report(&b, "cofferd", UsageError{Err: errors.New("unknown flag: --x")}, ExitUsage, "", false, "")
	if want := "cofferd: unknown flag: --x\nRun 'cofferd --help' for usage.\n"; b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
	b.Reset()
	Report(&b, "coffer", errors.New("context canceled"), ExitInterrupted, "", true, "interrupted; run it again")
	if !strings.Contains(b.String(), `"message":"interrupted; run it again","code":130,"kind":"interrupted"`) {
		t.Fatalf("got %q", b.String())
	}
}

// TestReportIsTerminalSafe: a message carrying another party's escape
// sequences reaches a terminal without them.
func TestReportIsTerminalSafe(t *testing.T) {
	var b bytes.Buffer
	Report(&b, "coffer", errors.New("vault says \x1b]0;owned\x07 hi"), ExitFailure, "", false, "")
	if strings.ContainsAny(b.String(), "\x1b\x07") {
		t.Fatalf("control characters reached the terminal: %q", b.String())
	}
}
