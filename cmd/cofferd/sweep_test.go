package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// TestServeSweepsStaleTempFiles: a pack a killed cofferd half-wrote into
// its local directory store is removed when cofferd serve starts.
func TestServeSweepsStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	if r := cofferd(t, dir, "tenant", "create", "acme"); r.code != 0 {
		t.Fatalf("tenant create: %+v", r)
	}
	half := filepath.Join(dir, "repos", "0123456789abcdef01234567", "data", "ab", ".tmp-0123456789abcdef")
	if err := os.MkdirAll(filepath.Dir(half), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(half, []byte("half a pack"), 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * store.TempGrace)
	if err := os.Chtimes(half, past, past); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"--store", "file://" + dir, "serve", "--listen", "127.0.0.1:0"}, io.Discard, &stderr)
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), `"removed":1`); {
		if time.Now().After(deadline) {
			t.Fatalf("no sweep reported: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(half); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the half-written pack is still there: %v", err)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
