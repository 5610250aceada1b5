package main

import (
	"testing"

	"github.com/cofferhq/coffer/internal/cli"
)

// TestEnvironmentTable: every variable cofferd's code names is in its one
// table, and README documents every entry.
func TestEnvironmentTable(t *testing.T) {
	unlisted, undocumented, err := cli.EnvGaps(environment, ".", "../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(unlisted) > 0 || len(undocumented) > 0 {
		t.Fatalf("not in the environment table: %v; not in README: %v", unlisted, undocumented)
	}
}
