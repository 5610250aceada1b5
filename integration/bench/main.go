package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
)

const (
	toolCoffer = "coffer"
	toolRestic = "restic"
	toolKopia  = "kopia"

	targetLocal = "local"
	targetS3    = "s3"
	targetVault = "vault"
)

var (
	allTools   = []string{toolCoffer, toolRestic, toolKopia}
	allTargets = []string{targetLocal, targetS3, targetVault}
)

// config is the parsed command line.
type config struct {
	Size        int64         `json:"size"`
	Quick       bool          `json:"quick"`
	Seed        uint64        `json:"seed"`
	Changed     float64       `json:"changed_fraction"`
	Insert      int64         `json:"insert_bytes"`
	Tools       []string      `json:"tools"`
	Targets     []string      `json:"targets"`
	Scenarios   []string      `json:"scenarios"`
	Ext4Size    int64         `json:"ext4_size"`
	Ext4Data    int64         `json:"ext4_data"`
	XenSize     int64         `json:"xen_size"`
	StartupRuns int           `json:"startup_runs"`
	StepTimeout time.Duration `json:"step_timeout_ns"`
	RestoreRuns int           `json:"restore_runs"`
	Workdir     string        `json:"workdir"`
	Keep        bool          `json:"keep"`
	ToolsDir    string        `json:"tools_dir"`
	CofferBin   string        `json:"coffer_bin,omitempty"`
	MinioBin    string        `json:"minio_bin,omitempty"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		if errors.Is(err, context.Canceled) {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

// sizeValue is a flag holding a byte count such as 4GiB or 512MiB.
type sizeValue struct {
	n   *int64
	set bool
}

func (s *sizeValue) String() string {
	if s.n == nil {
		return ""
	}
	return humanize.IBytes(uint64(*s.n))
}

func (s *sizeValue) Set(v string) error {
	n, err := humanize.ParseBytes(v)
	if err != nil || n > 1<<50 {
		return fmt.Errorf("bad size %q", v)
	}
	*s.n, s.set = int64(n), true
	return nil
}

func defaultToolsDir() string {
	if d := os.Getenv("COFFER_TOOLS"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "coffer-dev", "bin")
}

func parseList(v string, known []string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" || slices.Contains(out, s) {
			continue
		}
		if !slices.Contains(known, s) {
			return nil, fmt.Errorf("unknown %q (known: %s)", s, strings.Join(known, ", "))
		}
		out = append(out, s)
	}
	return out, nil
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := config{Size: 4 << 30, RestoreRuns: 3, StartupRuns: 3, Ext4Size: 4 << 30, Ext4Data: 320 << 20, XenSize: 16 << 30}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	size := &sizeValue{n: &cfg.Size}
	insert := &sizeValue{n: &cfg.Insert}
	fs.Var(size, "size", "image size (default 4GiB; 512MiB with --quick)")
	fs.Var(insert, "insert", "bytes inserted in the middle on night 2 (default size/128: 32MiB on 4GiB)")
	ext4Size := &sizeValue{n: &cfg.Ext4Size}
	ext4Data := &sizeValue{n: &cfg.Ext4Data}
	fs.Var(ext4Size, "ext4-size", "size of the real ext4 disk (default 4GiB; 1GiB with --quick)")
	fs.Var(ext4Data, "ext4-data", "bytes of files on the real ext4 disk (default 320MiB; 48MiB with --quick)")
	xenSize := &sizeValue{n: &cfg.XenSize}
	fs.Var(xenSize, "xen-size", "size of the XenServer VM's disk in the xen scenario (default 16GiB; 2GiB with --quick)")
	scenarios := fs.String("scenarios", strings.Join(allScenarios, ","),
		"scenarios: mix (the reference image), ext4 (a real ext4 system disk made by mkfs.ext4 -d), xen (a XenServer VM's nights with changed block tracking, through xapisim), seed (coffer seed export of the reference image, then cofferd seed import beside rclone copy to the same MinIO; needs the vault target)")
	fs.IntVar(&cfg.StartupRuns, "startup-runs", cfg.StartupRuns, "times each start-up command is run; the median is reported")
	fs.BoolVar(&cfg.Quick, "quick", false, "smoke run on a 512 MiB image")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "image seed (night 2 uses seed+1)")
	fs.Float64Var(&cfg.Changed, "changed", 0.01, "share of 64 KiB blocks rewritten on night 2")
	tools := fs.String("tools", strings.Join(allTools, ","), "tools to run")
	peers := fs.String("peers", "", "peers to run beside coffer (sets --tools to coffer plus these)")
	targets := fs.String("targets", strings.Join(allTargets, ","), "targets: local, s3 (MinIO on loopback), vault (coffer through cofferd on that MinIO)")
	fs.IntVar(&cfg.RestoreRuns, "restore-runs", cfg.RestoreRuns, "times each restore is run (in rounds across tools and targets); the run with the median wall time is reported")
	fs.DurationVar(&cfg.StepTimeout, "step-timeout", 30*time.Minute, "time limit of each child process")
	fs.StringVar(&cfg.Workdir, "workdir", os.Getenv("COFFER_BENCH_DIR"),
		"work directory (default $COFFER_BENCH_DIR, else a new directory under /tmp)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep images, repositories and MinIO data")
	fs.StringVar(&cfg.ToolsDir, "tools-dir", defaultToolsDir(), "where restic, kopia and minio are installed (scripts/install-peers.sh)")
	fs.StringVar(&cfg.CofferBin, "coffer-bin", "", "coffer binary to use instead of building ./cmd/coffer")
	fs.StringVar(&cfg.MinioBin, "minio-bin", os.Getenv("COFFER_MINIO_BIN"), "minio binary (default TOOLS-DIR/minio)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.Quick && !size.set {
		cfg.Size = 512 << 20
	}
	if cfg.Quick && !ext4Size.set {
		cfg.Ext4Size = 1 << 30
	}
	if cfg.Quick && !ext4Data.set {
		cfg.Ext4Data = 48 << 20
	}
	if cfg.Quick && !xenSize.set {
		cfg.XenSize = 2 << 30
	}
	if cfg.XenSize < 16<<20 || cfg.XenSize%xenBlock != 0 {
		return cfg, errors.New("--xen-size must be at least 16MiB and a multiple of 64KiB")
	}
	if cfg.Ext4Data < 1<<20 || cfg.Ext4Data > cfg.Ext4Size/2 {
		return cfg, errors.New("--ext4-data must be at least 1MiB and at most half of --ext4-size")
	}
	if cfg.StartupRuns < 1 || cfg.StartupRuns > 9 {
		return cfg, errors.New("--startup-runs must be within [1, 9]")
	}
	if !insert.set {
		cfg.Insert = cfg.Size / 128 / (64 << 10) * (64 << 10)
	}
	if cfg.Size < 16<<20 {
		return cfg, errors.New("--size must be at least 16MiB")
	}
	if cfg.RestoreRuns < 1 || cfg.RestoreRuns > 9 {
		return cfg, errors.New("--restore-runs must be within [1, 9]")
	}
	if cfg.Changed < 0 || cfg.Changed > 1 {
		return cfg, errors.New("--changed must be within [0, 1]")
	}
	var err error
	setTools, setPeers := false, false
	fs.Visit(func(f *flag.Flag) {
		setTools = setTools || f.Name == "tools"
		setPeers = setPeers || f.Name == "peers"
	})
	switch {
	case setTools && setPeers:
		return cfg, errors.New("give --tools or --peers, not both")
	case setPeers:
		var p []string
		if p, err = parseList(*peers, []string{toolRestic, toolKopia}); err != nil {
			return cfg, fmt.Errorf("--peers: %w", err)
		}
		cfg.Tools = append([]string{toolCoffer}, p...)
	default:
		if cfg.Tools, err = parseList(*tools, allTools); err != nil {
			return cfg, fmt.Errorf("--tools: %w", err)
		}
	}
	if cfg.Targets, err = parseList(*targets, allTargets); err != nil {
		return cfg, fmt.Errorf("--targets: %w", err)
	}
	if cfg.Scenarios, err = parseList(*scenarios, allScenarios); err != nil {
		return cfg, fmt.Errorf("--scenarios: %w", err)
	}
	if len(cfg.Tools) == 0 || len(cfg.Targets) == 0 || len(cfg.Scenarios) == 0 {
		return cfg, errors.New("nothing to run: no tools, targets or scenarios")
	}
	if cfg.MinioBin == "" {
		cfg.MinioBin = filepath.Join(cfg.ToolsDir, "minio")
	}
	return cfg, nil
}

// run is the whole benchmark. Everything it starts is stopped before it
// returns, also on error or interrupt.
func run(ctx context.Context, cfg config, stdout io.Writer) (err error) {
	if peersErr != nil {
		return peersErr
	}
	if cfg.Workdir == "" {
		if cfg.Workdir, err = os.MkdirTemp("", "coffer-bench-"); err != nil {
			return err
		}
	}
	if cfg.Workdir, err = filepath.Abs(cfg.Workdir); err != nil {
		return err
	}
	b := &bench{cfg: cfg, out: stdout, res: &Results{Config: cfg, Started: time.Now().UTC()}, quietLimit: quietLimit}
	for _, d := range []string{"images", "runs", "logs", "live", "bin"} {
		if err := os.MkdirAll(filepath.Join(cfg.Workdir, d), 0o755); err != nil {
			return err
		}
	}
	defer func() {
		if !cfg.Keep {
			for _, d := range []string{"images", "runs", "live", "minio", "bin"} {
				if rerr := os.RemoveAll(filepath.Join(cfg.Workdir, d)); rerr != nil && err == nil {
					err = rerr
				}
			}
		}
	}()
	b.logf("work directory %s", cfg.Workdir)

	b.findTools(ctx)
	if err := b.makeImages(ctx); err != nil {
		return err
	}
	if slices.Contains(cfg.Targets, targetS3) || slices.Contains(cfg.Targets, targetVault) {
		b.minioDir = filepath.Join(cfg.Workdir, "minio")
		srv, err := startMinIO(ctx, cfg.MinioBin, b.minioDir,
			filepath.Join(cfg.Workdir, "logs", "minio.log"))
		if err != nil {
			b.logf("s3 and vault targets skipped: %v", err)
			b.res.Notes = append(b.res.Notes, "s3 and vault targets skipped: "+err.Error())
		} else {
			b.minio = srv
			defer srv.Stop()
			b.res.MinIO = &MinIOInfo{Endpoint: srv.Endpoint, Version: srv.Version}
			b.logf("MinIO on %s", srv.Endpoint)
		}
	}
	if slices.Contains(cfg.Targets, targetVault) && b.minio != nil {
		v, err := b.startVault(ctx)
		if err != nil {
			b.logf("vault target skipped: %v", err)
			b.res.Notes = append(b.res.Notes, "vault target skipped: "+err.Error())
		} else {
			b.vault = v
			defer v.Stop()
			b.res.Vault = &VaultInfo{URL: v.URL, Bucket: vaultBucket, Log: v.logPath}
			b.logf("cofferd on %s (bucket %s)", v.URL, vaultBucket)
		}
	}
	var restores []*restoreJob
	for _, sc := range b.scenarios {
		for _, target := range cfg.Targets {
			for _, tool := range cfg.Tools {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if target == targetVault && tool != toolCoffer {
					continue // only coffer speaks the vault's API
				}
				if j := b.runSession(ctx, sc, tool, target); j != nil {
					restores = append(restores, j)
					if q := b.qcow2Job(j); q != nil && sc == b.scenarios[0] {
						restores = append(restores, q)
					}
					if p := proxiedJob(j); p != nil && sc == b.scenarios[0] {
						restores = append(restores, p)
					}
				}
			}
		}
	}
	b.restoreRounds(ctx, restores)
	if slices.Contains(cfg.Scenarios, scenarioXen) && ctx.Err() == nil {
		b.res.Xen = b.runXen(ctx)
	}
	if slices.Contains(cfg.Scenarios, scenarioSeed) && ctx.Err() == nil {
		b.res.Seed = b.runSeed(ctx)
	}
	if b.vault != nil && ctx.Err() == nil {
		b.res.Storm = b.storm(ctx)
	}
	if slices.Contains(cfg.Tools, toolCoffer) && len(b.scenarios) > 0 {
		b.res.IndexBytesPerEntry = indexMemory(ctx, b.moduleRoot)
		m := goBenchMetrics(ctx, b.moduleRoot, "./internal/nbdexport", "BenchmarkInstantAccess", "3x")
		if ms, ok := m["first-byte-ms"]; ok && m["MB/s"] > 0 {
			b.res.InstantAccess = &InstantAccess{FirstByteMs: ms, MBps: m["MB/s"]}
		}
		b.res.BandwidthWindows = runBandwidthWindows(ctx, b.moduleRoot)
	}
	b.res.Finished = time.Now().UTC()
	b.res.Checks = checks(b.res)
	report(b.out, b.res)
	path := filepath.Join(cfg.Workdir, "bench.json")
	if err := writeJSON(path, b.res); err != nil {
		return err
	}
	fmt.Fprintf(b.out, "\nresults: %s\n", path)
	return ctx.Err()
}

// logf prints a progress line.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.out, "# "+format+"\n", args...)
}
