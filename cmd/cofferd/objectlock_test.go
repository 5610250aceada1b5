package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/testutil/miniotest"
	"github.com/cofferhq/coffer/internal/vaultapi"
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
	// The environment gives the same settings.
	t.Setenv(EnvObjectLock, "compliance")
	if r := cofferd(t, dir, "tenant", "list"); r.code == 0 || !strings.Contains(r.stderr, "s3://") {
		t.Errorf("%s=compliance on a directory store: exit %d, %s; want a refusal naming s3://", EnvObjectLock, r.code, r.stderr)
	}
	t.Setenv(EnvObjectLockDays, "a week")
	if r := cofferd(t, dir, "tenant", "list"); r.code != exitUsage || !strings.Contains(r.stderr, EnvObjectLockDays) {
		t.Errorf("%s=\"a week\": exit %d, %s; want a usage error naming the variable", EnvObjectLockDays, r.code, r.stderr)
	}
	t.Setenv(EnvObjectLock, "")
	if r := cofferd(t, dir, "tenant", "list"); r.code != 0 {
		t.Errorf("without object lock the days are not read: exit %d, %s", r.code, r.stderr)
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

// TestServeObjectLockEndToEnd: `cofferd serve --object-lock compliance`
// on a bucket with Object Lock stores an agent's pack locked for
// --object-lock-days, leaves the vault's own documents unlocked, refuses
// the agent's DELETE, and counts the tenant's store requests.
func TestServeObjectLockEndToEnd(t *testing.T) {
	srv := miniotest.Start(t)
	raw := srv.URL("coffer-serve-locked", "vault")
	lockFlags := []string{"--store", raw, "--object-lock", "compliance", "--object-lock-days", "2"}
	if r := runStore(raw, append(lockFlags[2:], "init")...); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	tok := tokenRE.FindString(runStore(raw, append(lockFlags[2:], "tenant", "create", "acme")...).stdout)
	if tok == "" {
		t.Fatal("no token")
	}
	sv := startServeArgs(t, append(lockFlags, "serve", "--store-write-rate", "50", "--store-read-rate", "100")...)
	base := "http://" + sv.listen
	cred, id, sum, _ := vaultapi.NewCredential()
	body, _ := vaultapi.EnrollRequest{Token: vaultapi.Secret(tok), CredentialID: id, CredentialSHA256: hex.EncodeToString(sum[:]), Host: "xen1"}.Encode()
	resp, err := http.Post(base+"/v1/enroll", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("enroll: %v %v", err, resp)
	}
	resp.Body.Close()
	pack := bytes.Repeat([]byte("locked"), 5000)
	h := sha256.Sum256(pack)
	name := "data/" + hex.EncodeToString(h[:1]) + "/" + hex.EncodeToString(h[:])
	for _, m := range []string{"PUT", "DELETE"} {
		var rd io.Reader = bytes.NewReader(pack)
		if m == "DELETE" {
			rd = nil
		}
		req, _ := http.NewRequest(m, base+"/v1/repo/"+name, rd)
		req.Header.Set("Authorization", "Bearer "+cred.Reveal())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[string]int{"PUT": 201, "DELETE": 403}[m]; resp.StatusCode != want {
			t.Fatalf("%s: %d; want %d", m, resp.StatusCode, want)
		}
	}
	packKey := checkServedLocks(t, srv.Client(t), "coffer-serve-locked", name)
	tid := strings.Split(strings.TrimPrefix(packKey, "vault/repos/"), "/")[0]
	resp, err = http.Get("http://" + sv.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(mb), `cofferd_tenant_store_requests_total{op="put",tenant="`+tid+`"} 1`) {
		t.Errorf("metrics lack the tenant's store put:\n%s", mb)
	}
}

// checkServedLocks checks the retention of everything in bucket: the pack
// name is under compliance for about two days, no state document is locked.
// It returns the pack's key.
func checkServedLocks(t *testing.T, c *minio.Client, bucket, name string) string {
	t.Helper()
	var packKey string
	for o := range c.ListObjects(t.Context(), bucket, minio.ListObjectsOptions{Prefix: "vault/", Recursive: true}) {
		mode, until, err := c.GetObjectRetention(t.Context(), bucket, o.Key, "")
		locked := err == nil && mode != nil && *mode == minio.Compliance
		if strings.HasSuffix(o.Key, "/"+name) {
			packKey = o.Key
			if !locked || until.Before(time.Now().Add(47*time.Hour)) || until.After(time.Now().Add(49*time.Hour)) {
				t.Errorf("pack %s: retention %v until %v (%v); want compliance for 2 days", o.Key, mode, until, err)
			}
		} else if strings.HasPrefix(o.Key, "vault/vault/") && locked {
			t.Errorf("state document %s is locked", o.Key)
		}
	}
	if packKey == "" {
		t.Fatal("the pack is not in the bucket")
	}
	return packKey
}
