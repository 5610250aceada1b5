package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/seed"
	"github.com/dustin/go-humanize"
)

// The seed scenario: coffer seed export of the reference image (night 1 of
// the mix) for a tenant of the vault, then the same seed's objects copied
// to the same MinIO twice: once by `rclone copy` (Debian's rclone, the
// judge) into a bucket of its own, once by `cofferd seed import`, which
// also checks the signature and every file's SHA-256 before and while it
// uploads. Each starts from the same page cache state (settle). It runs
// after the other scenarios, with the vault target.
const scenarioSeed = "seed"

// seedImportTarget is issue 20's target: the import's throughput at least
// this share of rclone's.
const seedImportTarget = 0.90

// rcloneBucket is the bucket rclone copies into.
const rcloneBucket = "rclone-judge"

// SeedResult is the seed scenario's figures.
type SeedResult struct {
	ImageBytes    int64   `json:"image_bytes"`
	Objects       int     `json:"objects"`
	Bytes         int64   `json:"bytes"`
	ParityBytes   int64   `json:"parity_bytes"`
	ExportSeconds float64 `json:"export_seconds"`
	Rclone        *Rate   `json:"rclone,omitempty"`
	Import        *Rate   `json:"import,omitempty"`
	// Rerun is a second import of the same seed (everything present).
	Rerun *Rate    `json:"rerun,omitempty"`
	Ratio num      `json:"ratio"`
	Notes []string `json:"notes,omitempty"`
	Error string   `json:"error,omitempty"`
}

// Rate is one copy of the seed's objects.
type Rate struct {
	Seconds       float64 `json:"seconds"`
	MBps          float64 `json:"mb_per_s"`
	ObjectsPerSec float64 `json:"objects_per_s"`
	UserSeconds   float64 `json:"user_seconds"`
	SysSeconds    float64 `json:"sys_seconds"`
}

func rate(u usage, bytes int64, objects int) *Rate {
	s := u.wall.Seconds()
	return &Rate{Seconds: s, MBps: float64(bytes) / 1e6 / s, ObjectsPerSec: float64(objects) / s,
		UserSeconds: u.user.Seconds(), SysSeconds: u.sys.Seconds()}
}

// runSeed runs the seed scenario; a failure is recorded in the result.
func (b *bench) runSeed(ctx context.Context) *SeedResult {
	r := &SeedResult{Ratio: num(math.NaN())}
	if err := b.seedScenario(ctx, r); err != nil {
		r.Error = err.Error()
		b.logf("seed: %v", err)
	}
	return r
}

func (b *bench) seedScenario(ctx context.Context, r *SeedResult) error {
	if b.vault == nil || b.minio == nil {
		return errors.New("needs the vault target (MinIO and cofferd)")
	}
	rclone, err := exec.LookPath("rclone")
	if err != nil {
		return errors.New("rclone is not installed (make judges installs Debian's rclone)")
	}
	image, err := b.seedImage()
	if err != nil {
		return err
	}
	r.ImageBytes = fileSize(image)
	s := &Session{Tool: toolCoffer, Target: targetVault, Scenario: scenarioSeed}
	bin, err := b.prepare(ctx, s, cofferDriver{})
	if err != nil {
		return fmt.Errorf("coffer init: %w", err)
	}
	dir := filepath.Join(s.dir, "usb")
	b.logf("seed: export of %s", humanize.IBytes(uint64(r.ImageBytes)))
	_, u, err := b.exec(ctx, s, "export", []string{bin, "--config", cofferDriver{}.config(s), "seed", "export",
		"--to", dir, "--image", image, "--name", "disk", "--json"})
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	r.ExportSeconds = u.wall.Seconds()
	sd, err := seed.Open(dir)
	if err != nil {
		return err
	}
	m := sd.Manifest
	r.Objects, r.Bytes = len(m.Objects), m.Bytes()
	for _, f := range m.Parity.Files {
		r.ParityBytes += f.Size
	}
	objects := filepath.Join(sd.Root, seed.ObjectsDir)
	b.logf("seed: %d objects, %s, parity %s, exported in %.1fs", r.Objects, humanize.IBytes(uint64(r.Bytes)),
		humanize.IBytes(uint64(r.ParityBytes)), r.ExportSeconds)

	if err := b.settle(objects); err != nil {
		return err
	}
	env := append(cleanEnv(filepath.Join(s.dir, "home")), "RCLONE_CONFIG_BENCH_TYPE=s3", "RCLONE_CONFIG_BENCH_PROVIDER=Minio",
		"RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="+b.minio.User, "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="+b.minio.Password,
		"RCLONE_CONFIG_BENCH_ENDPOINT=http://"+b.minio.Endpoint)
	if _, _, err := command(ctx, b.cfg.StepTimeout, s.dir, env, []string{rclone, "mkdir", "bench:" + rcloneBucket}, b.logPath(s, "rclone-mkdir")); err != nil {
		return err
	}
	_, u, err = command(ctx, b.cfg.StepTimeout, s.dir, env, []string{rclone, "copy", objects, "bench:" + rcloneBucket + "/seed"}, b.logPath(s, "rclone"))
	if err != nil {
		return fmt.Errorf("rclone copy: %w", err)
	}
	r.Rclone = rate(u, r.Bytes, r.Objects)
	b.logf("seed: rclone copy %.1fs, %.0f MB/s, %.0f objects/s", r.Rclone.Seconds, r.Rclone.MBps, r.Rclone.ObjectsPerSec)

	if err := b.settle(sd.Root); err != nil {
		return err
	}
	tenant := "bench-" + strings.TrimSuffix(s.key(), "-"+s.Target)
	importArgv := []string{b.vault.bin, "--store", b.vault.storeURL, "seed", "import", "--tenant", tenant, dir, "--json"}
	_, u, err = command(ctx, b.cfg.StepTimeout, s.dir, b.vault.env, importArgv, b.logPath(s, "import"))
	if err != nil {
		return fmt.Errorf("cofferd seed import: %w", err)
	}
	r.Import = rate(u, r.Bytes, r.Objects)
	r.Ratio = num(r.Import.MBps / r.Rclone.MBps)
	b.logf("seed: cofferd seed import %.1fs, %.0f MB/s, %.0f objects/s: %.2fx rclone", r.Import.Seconds, r.Import.MBps,
		r.Import.ObjectsPerSec, float64(r.Ratio))

	// Run again: everything is there; it must say so quickly.
	_, u, err = command(ctx, b.cfg.StepTimeout, s.dir, b.vault.env, importArgv, b.logPath(s, "import-again"))
	if err == nil {
		r.Notes = append(r.Notes, "a second import succeeded; it must refuse a seed already imported")
	} else {
		r.Rerun = rate(u, 0, 0)
	}
	return nil
}

// seedImage is night 1 of the mix, or a new image of the same size and
// seed when the mix scenario is not in the run.
func (b *bench) seedImage() (string, error) {
	for _, sc := range b.scenarios {
		if sc.name == scenarioMix {
			return sc.night1, nil
		}
	}
	path := filepath.Join(b.cfg.Workdir, "images", "seed.img")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	start := time.Now()
	if err := diskgen.Generate(path, b.cfg.Size, b.cfg.Seed, diskgen.Options{}); err != nil {
		return "", err
	}
	b.logf("seed: image %s made in %.1fs", humanize.IBytes(uint64(b.cfg.Size)), time.Since(start).Seconds())
	return path, nil
}

// seedChecks is the seed scenario's check.
func seedChecks(r *Results) []Check {
	sr := r.Seed
	if sr == nil {
		return nil
	}
	c := Check{Name: "seed import throughput vs rclone copy (same MinIO)", Target: targetVault, Value: sr.Ratio,
		Limit: fmt.Sprintf(">= %gx", seedImportTarget), Status: "n/a", Note: sr.Error}
	if sr.Import != nil && sr.Rclone != nil {
		c.Status = passFail(float64(sr.Ratio) >= seedImportTarget)
		c.Note = fmt.Sprintf("%.0f vs %.0f MB/s, %.0f vs %.0f objects/s, %d objects, %s, verifying every SHA-256",
			sr.Import.MBps, sr.Rclone.MBps, sr.Import.ObjectsPerSec, sr.Rclone.ObjectsPerSec, sr.Objects, humanize.IBytes(uint64(sr.Bytes)))
	}
	return []Check{c}
}

// seedReport prints the seed scenario's figures.
func seedReport(w io.Writer, r *Results) {
	sr := r.Seed
	if sr == nil {
		return
	}
	fmt.Fprintf(w, "\n== Seed of the %s reference image: %d objects, %s, parity %s, exported in %.1fs\n",
		humanize.IBytes(uint64(sr.ImageBytes)), sr.Objects, humanize.IBytes(uint64(sr.Bytes)), humanize.IBytes(uint64(sr.ParityBytes)), sr.ExportSeconds)
	if sr.Error != "" {
		fmt.Fprintf(w, "  failed: %s\n", sr.Error)
	}
	for _, row := range []struct {
		name string
		r    *Rate
	}{{"rclone copy", sr.Rclone}, {"cofferd seed import", sr.Import}, {"import again (refused)", sr.Rerun}} {
		if row.r != nil {
			fmt.Fprintf(w, "  %-24s %7.1fs %7.0f MB/s %7.0f objects/s  user %.1fs sys %.1fs\n", row.name, row.r.Seconds, row.r.MBps,
				row.r.ObjectsPerSec, row.r.UserSeconds, row.r.SysSeconds)
		}
	}
	for _, n := range sr.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}
