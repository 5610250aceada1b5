package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/testutil/testfile"
	"github.com/cofferhq/coffer/internal/vaultclient"
	"github.com/dustin/go-humanize"
)

// Step names, in the order a session runs them.
const (
	stepFull    = "full"
	stepSecond  = "second"
	stepRestore = "restore"
	// stepRestoreQCOW2 is coffer's restore of the same snapshot into a
	// qcow2 image (restore --format qcow2), judged by qemu-img compare.
	stepRestoreQCOW2 = "restore-qcow2"
	// stepRestoreProxied is coffer's restore through the vault with direct
	// downloads off (COFFER_DIRECT_DOWNLOADS=off): every byte passes
	// through cofferd.
	stepRestoreProxied = "restore-proxied"
)

var stepTitles = map[string]string{
	stepFull:    "Full backup (night 1)",
	stepSecond:  "Second night (night 2)",
	stepRestore: "Restore (night 2)",
}

// Scenarios: the pairs of nights every tool backs up and restores.
const (
	scenarioMix  = "mix"  // the reference mix of diskgen
	scenarioExt4 = "ext4" // a mostly empty ext4 system disk (ext4.go)
)

var (
	allScenarios   = []string{scenarioMix, scenarioExt4, scenarioXen, scenarioSeed}
	scenarioTitles = map[string]string{scenarioMix: "", scenarioExt4: "Real ext4 disk: "}
)

// scenario is one pair of images, backed up from one path.
type scenario struct {
	name   string
	night1 string
	night2 string
	live   string // the path every tool backs up, a hard link to a night
}

// bench holds the state of one benchmark run.
type bench struct {
	cfg        config
	out        io.Writer
	res        *Results
	minio      *minioServer
	vault      *vaultServer // the vault target's cofferd
	moduleRoot string
	bins       map[string]string // tool -> binary; absent when missing
	scenarios  []*scenario       // the images made, in the order of cfg.Scenarios
	minioDir   string            // MinIO's data directory
	quietLimit time.Duration     // how long a start-up row waits for a quiet machine
	noDrop     bool              // the page cache cannot be dropped here
	// keepCache: settle neither drops the page cache nor waits for a quiet
	// machine (the tests, on a machine shared with other work).
	keepCache bool
	// endlessReporting: the guest reports free pages to its host without
	// a pause (see settle).
	endlessReporting bool
}

// Results is everything bench.json holds.
type Results struct {
	Config             config     `json:"config"`
	Started            time.Time  `json:"started"`
	Finished           time.Time  `json:"finished"`
	Machine            Machine    `json:"machine"`
	Images             Images     `json:"images"`
	RealDisk           *RealDisk  `json:"real_disk,omitempty"` // the ext4 scenario's images
	Tools              []ToolInfo `json:"tools"`
	Sessions           []*Session `json:"sessions"`
	IndexBytesPerEntry *float64   `json:"index_bytes_per_entry"`
	// InstantAccess is BenchmarkInstantAccess's (cofferd nbd's data path).
	InstantAccess *InstantAccess `json:"instant_access,omitempty"`
	// BandwidthWindows are BenchmarkBandwidthWindows's (the agent's
	// bandwidth limit, window by window).
	BandwidthWindows []BandwidthWindow `json:"bandwidth_windows,omitempty"`
	// DiskIndexBytesPerEntry is measured on the reference disk's own index.
	DiskIndexBytesPerEntry *float64    `json:"disk_index_bytes_per_entry"`
	Checks                 []Check     `json:"checks"`
	Ratios                 []Ratio     `json:"ratios"`
	Notes                  []string    `json:"notes,omitempty"`
	MinIO                  *MinIOInfo  `json:"minio,omitempty"`
	Vault                  *VaultInfo  `json:"vault,omitempty"`
	Storm                  *Storm      `json:"storm,omitempty"`
	Xen                    *XenResult  `json:"xen,omitempty"`  // the xen scenario (xen.go)
	Seed                   *SeedResult `json:"seed,omitempty"` // the seed scenario (seed.go)
}

// Machine describes where the run happened.
type Machine struct {
	CPUs      int    `json:"cpus"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	GoVersion string `json:"go_version"`
	Hostname  string `json:"hostname"`
}

// Images describes the two generated nights.
type Images struct {
	Night1Size      int64   `json:"night1_size"`
	Night1Allocated int64   `json:"night1_allocated"`
	Night2Size      int64   `json:"night2_size"`
	Night2Allocated int64   `json:"night2_allocated"`
	ChangedBlocks   int64   `json:"changed_blocks"`
	ChangedInHoles  int64   `json:"changed_in_holes"`
	InsertBytes     int64   `json:"insert_bytes"`
	InsertOffset    int64   `json:"insert_offset"`
	GenerateSeconds float64 `json:"generate_seconds"`
}

// ToolInfo says whether a tool was found and which version.
type ToolInfo struct {
	Name    string `json:"name"`
	Path    string `json:"path,omitempty"`
	Version string `json:"version,omitempty"`
	Missing string `json:"missing,omitempty"` // why it could not run
}

// MinIOInfo describes the S3 server.
type MinIOInfo struct {
	Endpoint string `json:"endpoint"`
	Version  string `json:"version"`
}

// Session is one tool on one target, in one scenario.
type Session struct {
	Tool     string  `json:"tool"`
	Target   string  `json:"target"`
	Scenario string  `json:"scenario"`
	Error    string  `json:"error,omitempty"` // why the session stopped early
	Steps    []*Step `json:"steps"`
	// Startup holds the start-up cost rows (startup.go), apart from Steps
	// so that they do not count in the session's CPU and peak RSS.
	Startup []*Step `json:"startup,omitempty"`

	sc       *scenario
	dir      string
	env      []string
	repoDir  string // local target: the repository directory
	s3Prefix string // s3 target: the key prefix, ending in '/'
	tenantID string // vault target: the tenant the session backs up into
	snapshot string // ID of the last backup
}

// Step is one measured child process.
type Step struct {
	Name          string         `json:"name"`
	Argv          []string       `json:"argv"`
	WallSeconds   float64        `json:"wall_seconds"`
	UserSeconds   float64        `json:"user_seconds"`
	SysSeconds    float64        `json:"sys_seconds"`
	CPUSeconds    float64        `json:"cpu_seconds"`
	MaxRSSKiB     int64          `json:"max_rss_kib"`
	ImageBytes    int64          `json:"image_bytes"`
	MBps          float64        `json:"mb_per_s"`
	StoredBytes   int64          `json:"stored_bytes,omitempty"`
	StoredDelta   int64          `json:"stored_delta,omitempty"`
	Objects       int64          `json:"objects,omitempty"`
	ServerCPU     float64        `json:"server_cpu_seconds,omitempty"`
	VaultCPU      float64        `json:"vault_cpu_seconds,omitempty"`  // cofferd's CPU during the step
	VaultRSSKiB   int64          `json:"vault_peak_rss_kib,omitempty"` // cofferd's VmHWM after the step
	Verified      *bool          `json:"verified,omitempty"`
	RestoredAlloc int64          `json:"restored_allocated,omitempty"`
	Summary       map[string]any `json:"summary,omitempty"` // the tool's own summary
	Runs          []RunFigures   `json:"runs,omitempty"`    // every run of a repeated step; the step is the median one
	Error         string         `json:"error,omitempty"`
	Log           string         `json:"log"`
}

// RunFigures are one run of a step that the bench repeats.
type RunFigures struct {
	WallSeconds float64 `json:"wall_seconds"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	MaxRSSKiB   int64   `json:"max_rss_kib"`
	ServerCPU   float64 `json:"server_cpu_seconds,omitempty"`
	Log         string  `json:"log"`
}

// session returns a session of the reference mix.
func (r *Results) session(tool, target string) *Session {
	return r.sessionIn(scenarioMix, tool, target)
}

func (r *Results) sessionIn(scenario, tool, target string) *Session {
	for _, s := range r.Sessions {
		if s.Tool == tool && s.Target == target && s.Scenario == scenario {
			return s
		}
	}
	return nil
}

// key names the session's directory, logs, S3 prefix and vault tenant:
// tool-target for the reference mix, as before scenarios existed.
func (s *Session) key() string {
	if s.Scenario == scenarioMix {
		return s.Tool + "-" + s.Target
	}
	return s.Scenario + "-" + s.Tool + "-" + s.Target
}

func (s *Session) step(name string) *Step {
	if s == nil {
		return nil
	}
	for _, st := range s.Steps {
		if st.Name == name && st.Error == "" {
			return st
		}
	}
	return nil
}

// findTools locates or builds every tool and records its version.
func (b *bench) findTools(ctx context.Context) {
	host, _ := os.Hostname()
	b.res.Machine = Machine{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		GoVersion: runtime.Version(), Hostname: host}
	b.bins = map[string]string{}
	b.moduleRoot = findModuleRoot()
	for _, tool := range b.cfg.Tools {
		info := ToolInfo{Name: tool}
		var path string
		var err error
		switch tool {
		case toolCoffer:
			path, err = b.buildCoffer(ctx)
		default:
			path = peerPath(b.cfg.ToolsDir, tool)
			if _, serr := os.Stat(path); serr != nil {
				err = fmt.Errorf("%s %s not installed at %s (run scripts/install-peers.sh)", tool, peerVersions[tool], path)
			}
		}
		if err == nil {
			info.Version, err = toolVersion(ctx, tool, path)
		}
		if err == nil && tool != toolCoffer {
			err = checkPeerVersion(tool, path, info.Version)
		}
		if err != nil {
			info.Missing = err.Error()
			b.logf("%s: missing: %v", tool, err)
		} else {
			info.Path = path
			b.bins[tool] = path
			b.logf("%s: %s (%s)", tool, info.Version, path)
		}
		b.res.Tools = append(b.res.Tools, info)
	}
}

// findModuleRoot returns the directory of Coffer's go.mod above the working
// directory, or "".
func findModuleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module github.com/cofferhq/coffer\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func (b *bench) buildCoffer(ctx context.Context) (string, error) {
	if b.cfg.CofferBin != "" {
		return b.cfg.CofferBin, nil
	}
	return b.build(ctx, "coffer")
}

// build builds ./cmd/<name> of the checkout into the work directory.
func (b *bench) build(ctx context.Context, name string) (string, error) {
	pkg := "./cmd/" + name
	if b.moduleRoot == "" {
		return "", fmt.Errorf("run from inside the coffer checkout to build %s", pkg)
	}
	out := filepath.Join(b.cfg.Workdir, "bin", name)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = b.moduleRoot
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s failed: %s", pkg, firstLine(string(msg), err))
	}
	return out, nil
}

func firstLine(s string, err error) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return err.Error()
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 3 {
		lines = lines[:3]
	}
	return strings.Join(lines, " | ")
}

func toolVersion(ctx context.Context, tool, path string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var args []string
	switch tool {
	case toolRestic:
		args = []string{"version"}
	case toolKopia:
		args = []string{"--version"}
	default:
		args = []string{"--help"}
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = cleanEnv(filepath.Dir(path))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s failed: %s", path, args[0], firstLine(string(out), err))
	}
	f := strings.Fields(string(out))
	switch {
	case tool == toolCoffer:
		return "dev (./cmd/coffer)", nil
	case tool == toolRestic && len(f) >= 2: // "restic 0.19.1 compiled with ..."
		return f[1], nil
	case tool == toolKopia && len(f) >= 1: // "0.23.1 build: ..."
		return f[0], nil
	}
	return "unknown", nil
}

// makeImages writes the images of every scenario. The ext4 scenario is
// skipped, with a note, when its tools are missing.
func (b *bench) makeImages(ctx context.Context) error {
	for _, name := range b.cfg.Scenarios {
		var sc *scenario
		var err error
		switch name {
		case scenarioMix:
			sc, err = b.makeMix()
		case scenarioXen, scenarioSeed:
			continue // they make their own disks (or use the mix's), after the other scenarios
		case scenarioExt4:
			sc, err = b.makeExt4(ctx)
			if errors.Is(err, errNoExt4Tools) {
				b.logf("ext4 scenario skipped: %v", err)
				b.res.Notes = append(b.res.Notes, "ext4 scenario skipped: "+err.Error())
				continue
			}
		}
		if err != nil {
			return err
		}
		b.scenarios = append(b.scenarios, sc)
	}
	return nil
}

// makeMix writes night 1 and night 2 of the reference mix.
func (b *bench) makeMix() (*scenario, error) {
	dir := filepath.Join(b.cfg.Workdir, "images")
	sc := &scenario{name: scenarioMix, night1: filepath.Join(dir, "night1.img"),
		night2: filepath.Join(dir, "night2.img"), live: filepath.Join(b.cfg.Workdir, "live", "disk.img")}
	start := time.Now()
	if err := diskgen.Generate(sc.night1, b.cfg.Size, b.cfg.Seed, diskgen.Options{}); err != nil {
		return nil, err
	}
	st, err := diskgen.Mutate(sc.night1, sc.night2, b.cfg.Seed+1, diskgen.MutateOptions{
		ChangedFraction: b.cfg.Changed, InsertBytes: b.cfg.Insert})
	if err != nil {
		return nil, err
	}
	im := Images{
		Night1Size: st.SrcSize, Night2Size: st.DstSize, ChangedBlocks: st.ChangedBlocks,
		ChangedInHoles: st.ChangedInHoles, InsertBytes: st.InsertBytes, InsertOffset: st.InsertOffset,
		GenerateSeconds: time.Since(start).Seconds(),
	}
	// Write the images out now, so that their write-back does not run
	// during the first measured step.
	syscall.Sync()
	im.Night1Allocated, _ = allocated(sc.night1)
	im.Night2Allocated, _ = allocated(sc.night2)
	b.res.Images = im
	b.logf("images: night 1 %s (%s data), night 2 %s (%d of %d blocks changed, %s inserted), made in %.1fs",
		humanize.IBytes(uint64(im.Night1Size)), humanize.IBytes(uint64(im.Night1Allocated)),
		humanize.IBytes(uint64(im.Night2Size)), st.ChangedBlocks, st.Blocks,
		humanize.IBytes(uint64(st.InsertBytes)), im.GenerateSeconds)
	return sc, nil
}

// allocated returns the bytes the file system allocated for path.
func allocated(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512, nil
}

// cleanEnv returns the environment without anything that configures a tool
// or holds credentials, with HOME and the XDG directories under home.
func cleanEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "RESTIC_"), strings.HasPrefix(k, "KOPIA_"), strings.HasPrefix(k, "AWS_"),
			strings.HasPrefix(k, "COFFER_"), strings.HasPrefix(k, "MINIO_"), strings.HasPrefix(k, "XDG_"),
			k == "HOME":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
}

func randomSecret() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// runSession runs init, full and second for one tool on one target in one
// scenario, then the start-up rows in the first scenario, and returns what
// its restores need (they run later, in rounds: restoreRounds), or nil when
// a step failed. A failed step ends the session; the error is recorded, not
// returned.
func (b *bench) runSession(ctx context.Context, sc *scenario, tool, target string) *restoreJob {
	s := &Session{Tool: tool, Target: target, Scenario: sc.name, sc: sc}
	b.res.Sessions = append(b.res.Sessions, s)
	drv := drivers[tool]
	bin, err := b.prepare(ctx, s, drv)
	if err == nil {
		err = b.backupNights(ctx, s, drv, bin)
	}
	if err != nil {
		s.Error = err.Error()
		b.logf("%s: %v", s.key(), err)
		return nil
	}
	if tool == toolCoffer && target == targetLocal && sc.name == scenarioMix {
		b.diskIndexMemory(ctx, s, bin)
	}
	if sc == b.scenarios[0] {
		b.startup(ctx, s, drv, bin)
	}
	return &restoreJob{s: s, drv: drv, bin: bin, outDir: filepath.Join(s.dir, "restore"), repoData: b.restoreInput(s)}
}

// qcow2Job is the qcow2 restore of a coffer session's restore job, or nil
// when qemu-img, its judge, is not installed.
func (b *bench) qcow2Job(j *restoreJob) *restoreJob {
	if j == nil || j.s.Tool != toolCoffer {
		return nil
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if note := "qcow2 restores skipped: qemu-img is not installed (make judges)"; !slices.Contains(b.res.Notes, note) {
			b.res.Notes = append(b.res.Notes, note)
		}
		return nil
	}
	q := *j
	q.format, q.outDir = "qcow2", filepath.Join(j.s.dir, "restore-qcow2")
	return &q
}

// proxiedJob is the restore through the vault with direct downloads off,
// beside a vault session's restore job (which uses them), or nil.
func proxiedJob(j *restoreJob) *restoreJob {
	if j == nil || j.s.Tool != toolCoffer || j.s.Target != targetVault {
		return nil
	}
	p := *j
	p.proxied, p.outDir = true, filepath.Join(j.s.dir, "restore-proxied")
	return &p
}

// prepare makes the session's directory and environment and runs the
// tool's unmeasured set-up; it returns the tool's binary.
func (b *bench) prepare(ctx context.Context, s *Session, drv driver) (string, error) {
	bin, ok := b.bins[s.Tool]
	switch {
	case !ok:
		return "", errors.New("missing")
	case (s.Target == targetS3 || s.Target == targetVault) && b.minio == nil:
		return "", errors.New("no MinIO")
	case s.Target == targetVault && b.vault == nil:
		return "", errors.New("no vault")
	}
	s.dir = filepath.Join(b.cfg.Workdir, "runs", s.key())
	home := filepath.Join(s.dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return "", err
	}
	s.env = cleanEnv(home)
	// The repository's name: the key without the target.
	repoName := strings.TrimSuffix(s.key(), "-"+s.Target)
	switch s.Target {
	case targetS3:
		s.s3Prefix = repoName + "/"
		s.env = append(s.env, "AWS_ACCESS_KEY_ID="+b.minio.User, "AWS_SECRET_ACCESS_KEY="+b.minio.Password)
	case targetVault:
		id, token, err := b.vault.createTenant(ctx, "bench-"+repoName)
		if err != nil {
			return "", err
		}
		s.tenantID = id
		s.env = append(s.env, "COFFER_ENROLL_TOKEN="+token.Reveal())
	default:
		s.repoDir = filepath.Join(s.dir, "repo")
	}
	s.env = append(s.env, drv.env(b, s, randomSecret())...)
	b.logf("%s: init", s.key())
	for i, argv := range drv.setup(b, s, bin) {
		if _, _, err := b.exec(ctx, s, fmt.Sprintf("init%d", i), argv); err != nil {
			return "", fmt.Errorf("init: %w", err)
		}
	}
	return bin, nil
}

// backupNights backs up night 1 then night 2 of the session's scenario from
// the same path, measuring each and the bytes the repository holds after.
func (b *bench) backupNights(ctx context.Context, s *Session, drv driver, bin string) error {
	sc := s.sc
	var prev int64
	for _, night := range []struct{ name, image string }{{stepFull, sc.night1}, {stepSecond, sc.night2}} {
		if err := relink(night.image, sc.live); err != nil {
			return err
		}
		b.logf("%s: %s backup", s.key(), night.name)
		st, out, err := b.measuredStep(ctx, s, night.name, drv.backup(s, bin, sc.live, "disk"), fileSize(sc.live), sc.live)
		s.Steps = append(s.Steps, st)
		if err == nil {
			st.Summary, s.snapshot, err = drv.parseBackup(out)
		}
		if err == nil {
			st.StoredBytes, st.Objects, err = b.stored(ctx, s)
			st.StoredDelta = st.StoredBytes - prev
			prev = st.StoredBytes
		}
		if err != nil {
			st.Error = err.Error()
			return fmt.Errorf("%s backup: %w", night.name, err)
		}
		b.logf("%s: %s: %.1fs, %.0f MB/s, stored %s (+%s)", s.key(), night.name,
			st.WallSeconds, st.MBps, humanize.IBytes(uint64(st.StoredBytes)), humanize.IBytes(uint64(st.StoredDelta)))
	}
	return nil
}

// restoreInput is what a session's restore reads, cached before each run:
// the tool's own objects in MinIO's data directory, not the whole
// directory. The other tools' repositories are not this step's input, and
// caching gigabytes of them made writing the restored image dearer on the
// bench VM, by amounts that depended on which tools ran.
func (b *bench) restoreInput(s *Session) string {
	switch s.Target {
	case targetS3:
		return filepath.Join(b.minioDir, b.minio.Bucket, strings.TrimSuffix(s.s3Prefix, "/"))
	case targetVault:
		return filepath.Join(b.minioDir, vaultBucket, "repos", s.tenantID)
	}
	return s.repoDir
}

// restoreJob is a session whose backups are done and whose restores are to
// be measured.
type restoreJob struct {
	s        *Session
	drv      driver
	bin      string
	outDir   string
	repoData string // what the restore reads, cached before each run
	format   string // "" (raw) or qcow2 (coffer only)
	proxied  bool   // through the vault with direct downloads off
	runs     []*Step
	err      error
}

// restoreRounds measures every session's restore cfg.RestoreRuns times. The
// runs go in rounds that take the sessions in turn (coffer, restic, kopia,
// coffer, ...), so that a stretch of time when the machine is slower (CPU
// steal on a shared VM) slows every tool alike instead of one tool's three
// runs. A restore leaves the repository as it was, so the runs are
// independent. The run with the median wall time becomes the session's
// restore step; every run's figures stay in its Runs. A run that fails, or
// whose output differs from night 2, fails the session.
func (b *bench) restoreRounds(ctx context.Context, jobs []*restoreJob) {
	for round := range b.cfg.RestoreRuns {
		for _, j := range jobs {
			if j.err != nil || ctx.Err() != nil {
				continue
			}
			b.logf("%s: %s (run %d of %d)", j.s.key(), j.step(), round+1, b.cfg.RestoreRuns)
			st, err := b.restoreOnce(ctx, j, round)
			if err != nil {
				j.err = err
				st.Name, st.Error = j.step(), err.Error()
				j.s.Steps = append(j.s.Steps, st)
				if j.format == "" { // a qcow2 restore that fails fails its row only
					j.s.Error = j.step() + ": " + err.Error()
				}
				b.logf("%s: %s: %v", j.s.key(), j.step(), err)
				continue
			}
			j.runs = append(j.runs, st)
		}
	}
	for _, j := range jobs {
		_ = os.RemoveAll(j.outDir)
		if j.err != nil || len(j.runs) == 0 {
			continue
		}
		byWall := slices.Clone(j.runs)
		slices.SortStableFunc(byWall, func(a, b *Step) int { return cmp.Compare(a.WallSeconds, b.WallSeconds) })
		st := byWall[len(byWall)/2]
		st.Name = j.step()
		if len(j.runs) > 1 {
			for _, r := range j.runs {
				st.Runs = append(st.Runs, RunFigures{WallSeconds: r.WallSeconds, CPUSeconds: r.CPUSeconds,
					MaxRSSKiB: r.MaxRSSKiB, ServerCPU: r.ServerCPU, Log: r.Log})
			}
		}
		j.s.Steps = append(j.s.Steps, st)
		b.logf("%s: %s: %.1fs (median of %d), %.0f MB/s, verified, %s allocated", j.s.key(), j.step(),
			st.WallSeconds, len(j.runs), st.MBps, humanize.IBytes(uint64(st.RestoredAlloc)))
	}
}

// restoreOnce runs and checks one restore of a job.
func (b *bench) restoreOnce(ctx context.Context, j *restoreJob, round int) (*Step, error) {
	s := j.s
	if err := os.RemoveAll(j.outDir); err != nil {
		return &Step{}, err
	}
	if err := os.MkdirAll(j.outDir, 0o755); err != nil {
		return &Step{}, err
	}
	argv, restored := j.drv.restore(s, j.bin, backupRef{path: s.sc.live, name: "disk", snapshot: s.snapshot}, j.outDir)
	if j.format != "" {
		restored = filepath.Join(j.outDir, "disk."+j.format)
		argv = append(argv[:len(argv)-1], restored, "--format", j.format)
	}
	if j.proxied {
		// env execs coffer in its own process: the figures are coffer's.
		argv = append([]string{"env", vaultclient.EnvDirectDownloads + "=off"}, argv...)
	}
	name := j.step()
	if round > 0 {
		name = fmt.Sprintf("%s-%d", j.step(), round+1)
	}
	st, _, err := b.measuredStep(ctx, s, name, argv, fileSize(s.sc.night2), j.repoData)
	if err != nil {
		return st, err
	}
	same, err := sameImage(ctx, restored, j.format, s.sc.night2)
	if err != nil {
		return st, err
	}
	st.Verified = &same
	st.RestoredAlloc, _ = allocated(restored)
	if !same {
		return st, fmt.Errorf("restored %s differs from night 2", restored)
	}
	return st, nil
}

// diskIndexMemory loads the index Coffer built for the two nights of the
// reference disk and records the heap it occupies per entry.
func (b *bench) diskIndexMemory(ctx context.Context, s *Session, bin string) {
	out, _, err := b.exec(ctx, s, "index-memory", []string{bin, "--config", cofferDriver{}.config(s), "debug", "index-memory"})
	if err != nil {
		b.logf("coffer index memory: %v", err)
		return
	}
	m, ok := lastJSON(out, func(m map[string]any) bool { return m["type"] == "index_memory" })
	if !ok {
		return
	}
	if v, ok := m["bytes_per_entry"].(float64); ok {
		b.res.DiskIndexBytesPerEntry = &v
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// relink makes the live path a hard link to image, so that every night is
// backed up from the same path.
func relink(image, live string) error {
	if err := os.Remove(live); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Link(image, live)
}

// warmTree reads a file, or every file below a directory, once so that the
// next step finds it in the page cache. Files that vanish meanwhile (MinIO
// empties its own trash in the background) are skipped.
func warmTree(root string) error {
	buf := make([]byte, 1<<20)
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p != root {
			return nil
		}
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf)
		return err
	})
}

// stored returns the bytes and number of files or objects in the session's
// repository.
func (b *bench) stored(ctx context.Context, s *Session) (size, n int64, err error) {
	if s.Target == targetVault {
		return b.vaultUsage(ctx, s.tenantID)
	}
	if s.repoDir == "" {
		return b.minio.usage(ctx, s.s3Prefix)
	}
	err = filepath.WalkDir(s.repoDir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		size += fi.Size()
		n++
		return nil
	})
	return size, n, err
}

// step is the job's step name.
func (j *restoreJob) step() string {
	if j.format == "qcow2" {
		return stepRestoreQCOW2
	}
	if j.proxied {
		return stepRestoreProxied
	}
	return stepRestore
}

// sameImage reports whether a restored image (raw, or qcow2 judged by
// qemu-img compare) equals the raw image want.
func sameImage(ctx context.Context, path, format, want string) (bool, error) {
	if format == "" {
		return testfile.Equal(path, want)
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "compare", "-f", "raw", "-F", format, want, path).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil
	}
	return false, fmt.Errorf("qemu-img compare: %v: %s", err, out)
}

// InstantAccess is what a client of a snapshot served over NBD waits for
// its first byte, and how fast it then reads the disk's data in order.
type InstantAccess struct {
	FirstByteMs float64 `json:"first_byte_ms"`
	MBps        float64 `json:"mbps"`
}
