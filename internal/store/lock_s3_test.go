package store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/store/storetest"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/testutil/miniotest"
)

const lockedPack = "repos/t1/data/ab/ab01"

// lockedPrefix is the policy's Match in these tests: the vault's layout
// (vault.LockedObject) in miniature.
func lockedPrefix(name string) bool { return strings.HasPrefix(name, "repos/") }

// openLocked opens the repository URL raw with an object lock policy.
func openLocked(t *testing.T, raw string, mode store.LockMode, retention time.Duration) *storeurl.Stack {
	t.Helper()
	st, err := storeurl.Open(t.Context(), raw, storeurl.Options{
		Retry:      store.RetryPolicy{Attempts: 3, Base: time.Millisecond, Max: time.Millisecond},
		ObjectLock: store.LockPolicy{Mode: mode, Retention: retention, Match: lockedPrefix},
	})
	if err != nil {
		t.Fatalf("Open(%s) with object lock: %v", raw, err)
	}
	t.Cleanup(func() { st.Provider.Close() })
	return st
}

// bucketKey returns the bucket and the key of name under raw's prefix.
func bucketKey(t *testing.T, raw, name string) (string, string) {
	t.Helper()
	tg, err := storeurl.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tg.S3.Bucket, tg.S3.Prefix + "/" + name
}

// versionsOf lists the version IDs of key, delete markers included.
func versionsOf(t *testing.T, c *minio.Client, bucket, key string) []string {
	t.Helper()
	var ids []string
	for o := range c.ListObjects(t.Context(), bucket, minio.ListObjectsOptions{Prefix: key, WithVersions: true, Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		if o.Key == key {
			ids = append(ids, o.VersionID)
		}
	}
	return ids
}

// TestS3ObjectLock is the "must hold" of Object Lock, in both modes: a
// pack put through the policy is locked; neither the store nor the bucket's
// own (root) credential can delete or replace its bytes before the lock
// ends (no governance bypass is ever sent); the store's Delete says until
// when, is not retried, and succeeds once the lock has ended, leaving no
// version behind. A state document outside the locked prefix is not locked.
func TestS3ObjectLock(t *testing.T) {
	t.Parallel() // it waits for locks to end: overlap that with the others
	srv := minioServer(t)
	for _, mode := range []store.LockMode{store.LockGovernance, store.LockCompliance} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			raw := srv.NewLockedBucket(t)
			st := openLocked(t, raw, mode, 2*time.Second)
			ctx := t.Context()
			body := []byte("sealed pack bytes")
			if err := st.Retry.Put(ctx, lockedPack, store.Bytes(string(body)), int64(len(body))); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if err := st.Retry.Put(ctx, "vault/tenants/t1", store.Bytes("{}"), 2); err != nil {
				t.Fatalf("Put of a state document: %v", err)
			}
			lock, err := store.LockInfo(ctx, st.Retry, lockedPack)
			if err != nil || lock.Mode != mode || !lock.Active(time.Now()) || lock.Until.After(time.Now().Add(4*time.Second)) {
				t.Fatalf("LockInfo(pack) = %v, %v; want a %s lock ending in about 2 s", lock, err, mode)
			}
			if l, err := store.LockInfo(ctx, st.Retry, "vault/tenants/t1"); err != nil || l != (store.Lock{}) {
				t.Errorf("LockInfo(state document) = %v, %v; want no lock", l, err)
			}
			assertCannotDelete(t, srv, raw, st, body)
			time.Sleep(time.Until(lock.Until) + 1500*time.Millisecond)
			if err := st.Retry.Delete(ctx, lockedPack); err != nil {
				t.Fatalf("Delete after the lock ended: %v", err)
			}
			bucket, key := bucketKey(t, raw, lockedPack)
			if v := versionsOf(t, srv.Client(t), bucket, key); len(v) != 0 {
				t.Errorf("after Delete the key keeps %d versions; want none", len(v))
			}
		})
	}
}

// assertCannotDelete tries every way to remove or replace the locked pack
// before its lock ends, and checks its bytes survive.
func assertCannotDelete(t *testing.T, srv *miniotest.Server, raw string, st *storeurl.Stack, body []byte) {
	t.Helper()
	ctx := t.Context()
	before := st.Counting.Requests()
	err := st.Retry.Delete(ctx, lockedPack)
	var le *store.LockedError
	if !errors.Is(err, store.ErrLocked) || !errors.As(err, &le) || le.Lock.Until.IsZero() ||
		!strings.Contains(err.Error(), "locked until") || !store.IsPermanent(err) {
		t.Fatalf("Delete of a locked pack = %v; want a permanent *LockedError saying until when", err)
	}
	if st.Retry.Waited() != 0 {
		t.Errorf("the retry layer waited %s on a locked object; want no retry", st.Retry.Waited())
	}
	if n := st.Counting.Requests() - before; n != 1 {
		t.Errorf("Delete of a locked pack made %d counted requests; want 1", n)
	}
	if err := st.Retry.Put(ctx, lockedPack, store.Bytes("other"), 5); !errors.Is(err, store.ErrExists) {
		t.Errorf("Put over a locked pack = %v; want ErrExists", err)
	}
	c := srv.Client(t)
	bucket, key := bucketKey(t, raw, lockedPack)
	versions := versionsOf(t, c, bucket, key)
	if len(versions) != 1 {
		t.Fatalf("the pack has %d versions; want 1", len(versions))
	}
	err = c.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{VersionID: versions[0]})
	var er minio.ErrorResponse
	if !errors.As(err, &er) || er.Code != "AccessDenied" && !strings.Contains(er.Message, "WORM") {
		t.Errorf("root credential deleting the locked version = %v; want a refusal", err)
	}
	// Without a version ID, and with a plain overwrite, S3 only stacks a
	// delete marker or a new version on top: the locked bytes stay.
	if err := c.RemoveObject(ctx, bucket, key, minio.RemoveObjectOptions{}); err != nil {
		t.Logf("delete without a version: %v", err)
	}
	if _, err := c.PutObject(ctx, bucket, key, bytes.NewReader([]byte("ransom")), 6, minio.PutObjectOptions{}); err != nil {
		t.Logf("overwrite: %v", err)
	}
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{VersionID: versions[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if got, err := io.ReadAll(obj); err != nil || !bytes.Equal(got, body) {
		t.Errorf("the locked version holds %q, %v; want the pack's bytes", got, err)
	}
}

// TestS3LockerConformance: the S3 store keeps Object Lock's rules, in a
// MinIO bucket made with it.
func TestS3LockerConformance(t *testing.T) {
	t.Parallel()
	srv := minioServer(t)
	storetest.RunLocker(t, func(t *testing.T) storetest.LockerEnv {
		st := openLocked(t, srv.NewLockedBucket(t), store.LockGovernance, time.Hour)
		return storetest.LockerEnv{Store: st.Retry, Mode: store.LockGovernance, Now: time.Now,
			Wait: func(until time.Time) { time.Sleep(time.Until(until) + time.Second) }}
	})
}

// TestS3ExtendLocks: ExtendLocks moves locks that end too early, counts
// those already long enough without writing, reports missing names, gives
// an unlocked object the policy's mode, and never shortens.
func TestS3ExtendLocks(t *testing.T) {
	srv := minioServer(t)
	st := openLocked(t, srv.NewLockedBucket(t), store.LockGovernance, time.Hour)
	ctx := t.Context()
	names := []string{"repos/t1/data/aa/01", "repos/t1/data/aa/02", "repos/t1/data/aa/03"}
	for _, n := range names {
		if err := st.Retry.Put(ctx, n, store.Bytes("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Retry.Put(ctx, "plain/unlocked", store.Bytes("y"), 1); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(2 * time.Hour).Truncate(time.Second)
	want := append(names[:2:2], "plain/unlocked", "repos/t1/data/aa/missing")
	rep, err := store.ExtendLocks(ctx, st.Retry, want, until, 2)
	if err != nil || rep.Extended != 3 || rep.Current != 0 || len(rep.Missing) != 1 || rep.Missing[0] != want[3] {
		t.Fatalf("ExtendLocks = %+v, %v; want 3 extended, 1 missing", rep, err)
	}
	for _, n := range want[:3] {
		l, err := store.LockInfo(ctx, st.Retry, n)
		if err != nil || l.Mode != store.LockGovernance || !l.Until.Equal(until) {
			t.Errorf("LockInfo(%s) = %v, %v; want governance until %s", n, l, err, until)
		}
	}
	if l, _ := store.LockInfo(ctx, st.Retry, names[2]); !l.Until.Before(until) {
		t.Errorf("%s was not asked for but its lock is %v", names[2], l)
	}
	before := st.Counting.Requests()
	rep, err = store.ExtendLocks(ctx, st.Retry, want[:3], until.Add(-time.Minute), 2)
	if err != nil || rep.Extended != 0 || rep.Current != 3 {
		t.Fatalf("ExtendLocks to an earlier date = %+v, %v; want 3 current, none extended", rep, err)
	}
	if n := st.Counting.Requests() - before; n != 3 {
		t.Errorf("a re-run made %d requests; want one read each (3)", n)
	}
	if l, _ := store.LockInfo(ctx, st.Retry, names[0]); !l.Until.Equal(until) {
		t.Errorf("an earlier date changed the lock to %v; want it kept at %s", l, until)
	}
}

// TestS3ObjectLockNeedsLockedBucket: a store opened with object lock on a
// bucket without it is refused with what to do; with Create a missing
// bucket is made with Object Lock.
func TestS3ObjectLockNeedsLockedBucket(t *testing.T) {
	srv := minioServer(t)
	policy := store.LockPolicy{Mode: store.LockGovernance, Retention: time.Hour, Match: lockedPrefix}
	_, err := storeurl.Open(t.Context(), srv.NewBucket(t), storeurl.Options{ObjectLock: policy})
	if !errors.Is(err, store.ErrNoObjectLock) || !strings.Contains(err.Error(), "--with-lock") {
		t.Fatalf("Open of a bucket without object lock = %v; want ErrNoObjectLock saying how to make one", err)
	}
	raw := srv.URL("coffer-made-locked", "repo")
	st, err := storeurl.Open(t.Context(), raw, storeurl.Options{ObjectLock: policy, Create: true})
	if err != nil {
		t.Fatalf("Open with Create and object lock: %v", err)
	}
	defer st.Provider.Close()
	if err := st.Retry.Put(t.Context(), lockedPack, store.Bytes("x"), 1); err != nil {
		t.Fatal(err)
	}
	if l, err := store.LockInfo(t.Context(), st.Retry, lockedPack); err != nil || l.Mode != store.LockGovernance {
		t.Errorf("LockInfo in the bucket Create made = %v, %v; want a governance lock", l, err)
	}
	if _, err := storeurl.Open(t.Context(), "file://"+t.TempDir(), storeurl.Options{ObjectLock: policy}); err == nil ||
		!strings.Contains(err.Error(), "s3://") {
		t.Errorf("Open of a directory with object lock = %v; want a refusal naming s3://", err)
	}
}

// TestS3LockedBucketConformance: a bucket with Object Lock (versioned) is
// still a store for everything the policy does not lock, and a Swapper for
// the vault's state documents; a Swap of a locked name is refused.
func TestS3LockedBucketConformance(t *testing.T) {
	t.Parallel()
	srv := minioServer(t)
	open := func(t *testing.T) store.Store {
		return openLocked(t, srv.NewLockedBucket(t), store.LockCompliance, time.Hour).Base
	}
	storetest.Run(t, open)
	sw, ok := store.As[store.Swapper](open(t))
	if !ok {
		t.Fatal("the object-locked store offers no Swapper")
	}
	ctx := t.Context()
	v1, err := sw.Swap(ctx, "vault/tenants/t1", []byte("1"), "")
	if err != nil {
		t.Fatalf("Swap to create a state document: %v", err)
	}
	v2, err := sw.Swap(ctx, "vault/tenants/t1", []byte("2"), v1)
	if err != nil {
		t.Fatalf("Swap to replace it: %v", err)
	}
	if _, err := sw.Swap(ctx, "vault/tenants/t1", []byte("3"), v1); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Swap with a stale version = %v; want ErrConflict", err)
	}
	if b, v, err := sw.ReadVersioned(ctx, "vault/tenants/t1", 10); err != nil || string(b) != "2" || v != v2 {
		t.Errorf("ReadVersioned = %q, %q, %v; want \"2\" at the second version", b, v, err)
	}
	if _, err := sw.Swap(ctx, "repos/t1/state", []byte("x"), ""); err == nil || !store.IsPermanent(err) {
		t.Errorf("Swap of a locked name = %v; want a permanent refusal", err)
	}
}

// TestS3LockInfoMissing: LockInfo of a missing object is ErrNotFound; in a
// bucket without Object Lock every object has the zero lock, and
// ExtendLock fails with ErrNoObjectLock.
func TestS3LockInfoMissing(t *testing.T) {
	srv := minioServer(t)
	st := openLocked(t, srv.NewLockedBucket(t), store.LockGovernance, time.Hour)
	if _, err := store.LockInfo(t.Context(), st.Retry, "repos/t1/none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LockInfo of a missing object = %v; want ErrNotFound", err)
	}
	plain, err := store.OpenS3(t.Context(), s3Config(t, srv, srv.NewBucket(t)), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Put(t.Context(), "a", store.Bytes("x"), 1); err != nil {
		t.Fatal(err)
	}
	if l, err := plain.LockInfo(t.Context(), "a"); err != nil || l != (store.Lock{}) {
		t.Errorf("LockInfo without object lock = %v, %v; want the zero lock", l, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = plain.ExtendLock(ctx, "a", store.Lock{Mode: store.LockGovernance, Until: time.Now().Add(time.Hour)})
	if !errors.Is(err, store.ErrNoObjectLock) || !store.IsPermanent(err) {
		t.Errorf("ExtendLock without object lock = %v; want a permanent ErrNoObjectLock", err)
	}
	err = plain.PutLocked(ctx, "b", store.Bytes("x"), 1, store.Lock{Mode: store.LockGovernance, Until: time.Now().Add(time.Hour)})
	if !errors.Is(err, store.ErrNoObjectLock) {
		t.Errorf("PutLocked without object lock = %v; want ErrNoObjectLock", err)
	}
}

// s3Config is the S3Config of a repository URL on srv, with its keys.
func s3Config(t *testing.T, srv *miniotest.Server, raw string) store.S3Config {
	t.Helper()
	tg, err := storeurl.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	cfg := *tg.S3
	cfg.AccessKey, cfg.SecretKey = srv.AccessKey, srv.SecretKey
	return cfg
}
