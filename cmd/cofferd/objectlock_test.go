package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/testutil/miniotest"
)

// runStore runs cofferd with --store raw.
func runStore(raw string, args ...string) result {
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"--store", raw}, args...), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// TestObjectLockFlagsRefused: bad --object-lock values are usage errors,
// and a store that cannot lock objects is refused with what to do.
func TestObjectLockFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--object-lock", "forever", "tenant", "list"},
		{"--object-lock", "governance", "--object-lock-days", "0", "tenant", "list"},
		{"--object-lock", "compliance", "--object-lock-days", "99999", "tenant", "list"},
		{"serve", "--listen", "127.0.0.1:0", "--store-write-rate", "-1"},
		{"serve", "--listen", "127.0.0.1:0", "--store-read-rate", "NaN"},
	} {
		if r := cofferd(t, dir, args...); r.code != exitUsage {
			t.Errorf("%v: exit %d (%s); want usage (%d)", args, r.code, r.stderr, exitUsage)
		}
	}
	if r := cofferd(t, dir, "--object-lock", "governance", "tenant", "list"); r.code == 0 || !strings.Contains(r.stderr, "s3://") {
		t.Errorf("object lock on a directory store: exit %d, %s; want a refusal naming s3://", r.code, r.stderr)
	}
}

// TestObjectLockBucket: with --object-lock, cofferd refuses a bucket
// made without Object Lock (saying how to make one), and init makes a
// missing bucket with it.
func TestObjectLockBucket(t *testing.T) {
	srv := miniotest.Start(t)
	plain := srv.NewBucket(t)
	if r := runStore(plain, "init"); r.code != 0 {
		t.Fatalf("init without lock: %+v", r)
	}
	r := runStore(plain, "--object-lock", "governance", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "", "--store-wait", "0")
	if r.code == 0 || !strings.Contains(r.stderr, "object lock") || !strings.Contains(r.stderr, "--with-lock") {
		t.Fatalf("serve --object-lock on a bucket without it: exit %d, %s; want a refusal saying how to make one", r.code, r.stderr)
	}
	raw := srv.URL("coffer-init-locked", "vault")
	if r := runStore(raw, "--object-lock", "compliance", "init"); r.code != 0 {
		t.Fatalf("init --object-lock on a missing bucket: %+v", r)
	}
	tg, err := storeurl.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	enabled, _, _, _, err := srv.Client(t).GetObjectLockConfig(t.Context(), tg.S3.Bucket)
	if err != nil || enabled != "Enabled" {
		t.Errorf("the bucket init made has object lock %q, %v; want Enabled", enabled, err)
	}
	if r := runStore(raw, "--object-lock", "compliance", "tenant", "create", "acme"); r.code != 0 {
		t.Errorf("tenant create on the locked bucket (state documents by compare-and-swap): %+v", r)
	}
}
