package uploader_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
	"github.com/cofferhq/coffer/uploader"
)

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestZZExp(t *testing.T) {
	if os.Getenv("COFFER_EXP") == "" {
		t.Skip()
	}
	env := func(k string, d int) int {
		if v := os.Getenv(k); v != "" {
			n, _ := strconv.Atoi(v)
			return n
		}
		return d
	}
	size := int64(env("EXP_GIB", 2)) << 30
	ctx := context.Background()
	dir := os.Getenv("EXP_DIR")
	img := filepath.Join(dir, "disk.img")
	if _, err := os.Stat(img); err != nil {
		if err := diskgen.Generate(img, size, 1, diskgen.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	rdir := t.TempDir()
	st, _ := store.OpenLocal(filepath.Join(rdir, "repo"), true)
	cfg := repo.DefaultConfig()
	cfg.Chunker = repo.ChunkerParams{Min: uint(env("EXP_MIN", 192<<10)), AvgBits: env("EXP_BITS", 16), Max: uint(env("EXP_MAX", 1<<20))}
	r, err := repo.Init(ctx, st, []byte("pw"), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := uploader.StartSession(ctx, r, uploader.SessionOptions{Workers: env("EXP_WORKERS", 2)})
	t0, c0 := time.Now(), cpuNow()
	base, bc := backupSource(t, s, img, nil, manifest.Chunking(os.Getenv("EXP_CHUNKING")))
	fmt.Printf("full: %.2fs cpu %.2fs chunks %d new %d MiB stored %.1f MiB\n", time.Since(t0).Seconds(), (cpuNow() - c0).Seconds(), bc.Chunks.Load(), bc.NewBytes.Load()>>20, float64(bc.Stored.Load())/(1<<20))
	if _, err := s.Commit(ctx, &manifest.Snapshot{Name: "full", Source: manifest.Source{Kind: "image"}, Disks: []manifest.Disk{base}}); err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)
	// Guest writes 1% random blocks (copy of the image).
	img2 := filepath.Join(dir, "disk2.img")
	copyFile(t, img, img2)
	pct, _ := strconv.ParseFloat(os.Getenv("EXP_PCT"), 64)
	blocks, _ := xapisim.RandomBlocks(size, pct, 9)
	f, _ := os.OpenFile(img2, os.O_RDWR, 0)
	buf := make([]byte, manifest.BlockSize)
	bitmap := make([]byte, uploader.BitmapLen(size))
	for i, b := range blocks {
		for j := range buf {
			buf[j] = byte((uint64(i)*2654435761 + uint64(j)*40503) >> 7)
		}
		randFill(buf, uint64(b))
		f.WriteAt(buf, b*manifest.BlockSize)
		bitmap[b>>3] |= 0x80 >> (b & 7)
	}
	f.Close()
	exec1(t, "sh", "-c", "cat "+img2+" > /dev/null")
	s, _ = uploader.StartSession(ctx, r, uploader.SessionOptions{Workers: env("EXP_WORKERS", 2)})
	t0, c0 = time.Now(), cpuNow()
	if os.Getenv("EXP_PROF") != "" {
		startProf(t, os.Getenv("EXP_PROF"))
	}
	cbt, c := backupSource(t, s, img2, &uploader.Changes{Base: &base, Bitmap: bitmap}, manifest.Chunking(os.Getenv("EXP_CHUNKING")))
	if _, err := s.Commit(ctx, &manifest.Snapshot{Name: "cbt", Source: manifest.Source{Kind: "image"}, Disks: []manifest.Disk{cbt}}); err != nil {
		t.Fatal(err)
	}
	s.Close(ctx)
	stopProf()
	fmt.Printf("cbt: %.2fs cpu %.2fs read %d MiB fetched %d MiB new %d MiB stored %d MiB newchunks %d\n", time.Since(t0).Seconds(), (cpuNow() - c0).Seconds(), c.Read.Load()>>20, c.Fetched.Load()>>20, c.NewBytes.Load()>>20, c.Stored.Load()>>20, c.NewChunks.Load())
	os.Remove(img2)
}
