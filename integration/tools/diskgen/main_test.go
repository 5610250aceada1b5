package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	n1, n2, sp := filepath.Join(dir, "n1"), filepath.Join(dir, "n2"), filepath.Join(dir, "sp")
	var out bytes.Buffer
	if err := run([]string{"gen", "--size", "32MiB", "--seed", "3", n1}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "16 zero, 6 random, 10 text") {
		t.Errorf("gen summary: %q", out.String())
	}
	// Flags may follow the file arguments.
	if err := run([]string{"mutate", n1, n2, "--insert", "1MiB", "--changed", "0.1"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "51 of 512 64 KiB blocks changed") {
		t.Errorf("mutate summary: %q", out.String())
	}
	if fi, err := os.Stat(n2); err != nil || fi.Size() != 33<<20 {
		t.Errorf("night 2: %v, %v; want 33 MiB", fi, err)
	}
	if err := run([]string{"sparse", "--size", "64MiB", "--data", "2MiB", sp}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(sp); err != nil || fi.Size() != 64<<20 {
		t.Errorf("sparse image: %v, %v", fi, err)
	}

	for _, bad := range [][]string{
		nil,
		{"frobnicate"},
		{"gen"},
		{"gen", "--size", "lots", n1},
		{"mutate", n1},
	} {
		var ue usageError
		if err := run(bad, io.Discard, io.Discard); !errors.As(err, &ue) {
			t.Errorf("%q: got %v, want a usage error", bad, err)
		}
	}
	if err := run([]string{"mutate", filepath.Join(dir, "missing"), n2}, io.Discard, io.Discard); err == nil {
		t.Error("missing source accepted")
	}
}
