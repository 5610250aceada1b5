package jobs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/storeurl"
	"github.com/cofferhq/coffer/internal/testutil/miniotest"
	"github.com/cofferhq/coffer/vault/ledger"
)

// EnvSeedSpeed sets the size in MiB of the seed TestSeedImportSpeed
// imports into MinIO beside rclone copy of the same files; unset, the test
// skips (it is a measurement, not a check).
const EnvSeedSpeed = "COFFER_SEED_SPEED_MIB"

func TestSeedImportSpeed(t *testing.T) {
	mib, _ := strconv.Atoi(os.Getenv(EnvSeedSpeed))
	if mib <= 0 {
		t.Skipf("set %s=1024 to measure a seed import into MinIO against rclone copy", EnvSeedSpeed)
	}
	rclone, err := exec.LookPath("rclone")
	if err != nil {
		t.Skip("rclone is not installed")
	}
	srv := miniotest.Start(t)
	e := newImportEnv(t)
	dir := speedSeed(t, e.key, mib)

	stack, err := storeurl.Open(ctx, srv.URL(newBucket(t, srv), ""), storeurl.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Provider.Close()
	sw, _ := store.As[store.Swapper](stack.Retry)
	led, err := ledger.New(stack.Retry, stack.Retry, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := ImportOptions{Data: stack.Retry, Meta: stack.Retry, Swap: sw, Ledger: led, Dir: dir, WorkDir: t.TempDir(), Tenant: e.tenant}
	if p := os.Getenv("COFFER_SEED_SPEED_WORKERS"); p != "" {
		o.Workers, _ = strconv.Atoi(p)
	}
	watch := clock.Start()
	rep, err := ImportSeed(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	ours := watch.Elapsed()

	cmd := exec.CommandContext(context.Background(), rclone, "copy", "--transfers", "4", "--s3-no-check-bucket",
		filepath.Join(seed.Root(dir), seed.ObjectsDir), "minio:"+newBucket(t, srv)+"/repos/"+tid)
	var env []string
	for _, v := range os.Environ() {
		if !strings.HasPrefix(v, "AWS_CA_BUNDLE=") { // rclone refuses it over plain HTTP
			env = append(env, v)
		}
	}
	cmd.Env = append(env, "RCLONE_CONFIG_MINIO_TYPE=s3", "RCLONE_CONFIG_MINIO_PROVIDER=Minio",
		"RCLONE_CONFIG_MINIO_ENDPOINT=http://"+srv.Endpoint, "RCLONE_CONFIG_MINIO_ACCESS_KEY_ID="+srv.AccessKey,
		"RCLONE_CONFIG_MINIO_SECRET_ACCESS_KEY="+srv.SecretKey)
	watch = clock.Start()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rclone copy: %v\n%s", err, out)
	}
	theirs := watch.Elapsed()
	mb := float64(rep.Bytes) / 1e6
	t.Logf("seed import: %d objects, %.0f MB in %s: %.1f MB/s, %.1f objects/s (every file hashed twice)",
		rep.Objects, mb, ours.Round(time.Millisecond), mb/ours.Seconds(), float64(rep.Objects)/ours.Seconds())
	t.Logf("rclone copy: %s, %.1f MB/s; the import reaches %.0f%% of it", theirs.Round(time.Millisecond), mb/theirs.Seconds(),
		100*theirs.Seconds()/ours.Seconds())
}

func newBucket(t *testing.T, srv *miniotest.Server) string {
	t.Helper()
	name := fmt.Sprintf("seed-speed-%d", rand.Uint32())
	if err := srv.Client(t).MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// speedSeed writes a seed of about mib MiB in 16 MiB packs of random
// bytes, with an index file, a snapshot and its receipt.
func speedSeed(t *testing.T, k *crypto.SigningKey, mib int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "disk")
	root := filepath.Join(dir, seed.RootDir)
	put := func(name string, b []byte) {
		p := filepath.Join(root, seed.ObjectsDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := rand.NewChaCha8([32]byte{7})
	b := make([]byte, 16<<20)
	for range max(1, mib/16) {
		_, _ = r.Read(b)
		h := sha(b)
		put("data/"+h[:2]+"/"+h, b)
	}
	put("index/"+sha([]byte("index")), []byte("index"))
	snap := []byte("snapshot")
	put("snapshots/"+sha(snap), snap)
	m := &seed.Manifest{Format: seed.Format, ID: strings.Repeat("5e", 32), Tenant: tid, Repository: strings.Repeat("cd", 32),
		Created: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Signer: k.Public()}
	if err := seed.Finish(ctx, root, m, k, seed.FinishOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}
