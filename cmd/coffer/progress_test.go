package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// With --json, a running operation prints a progress line a second: its
// type, size, done and the operation's own fields.
func TestShowProgressJSON(t *testing.T) {
	var out bytes.Buffer
	g := &globals{json: true, stdout: &out, stderr: &out}
	stop := g.showProgress(context.Background(), "restore", 1000, func() progressSample {
		return progressSample{done: 250, json: map[string]any{"bytes_fetched": 42}}
	})
	time.Sleep(1100 * time.Millisecond)
	stop()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("progress output %q: %v", out.String(), err)
	}
	if m["type"] != "progress" || m["size"] != 1000.0 || m["done"] != 250.0 || m["bytes_fetched"] != 42.0 {
		t.Fatalf("progress line %v", m)
	}
	// --quiet, or no terminal without --json: nothing.
	out.Reset()
	g = &globals{stdout: &out, stderr: &out}
	g.showProgress(context.Background(), "restore", 1000, func() progressSample { return progressSample{} })()
	if out.Len() != 0 {
		t.Fatalf("progress without a terminal or --json: %q", out.String())
	}
}
