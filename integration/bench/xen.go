package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cofferhq/coffer/internal/diskgen"
	"github.com/cofferhq/coffer/internal/testutil/testfile"
	"github.com/cofferhq/coffer/internal/xenapi/xapisim"
	"github.com/dustin/go-humanize"
)

// The xen scenario: one VM of a simulated XenServer pool (cmd/xapisim) with
// one disk of the reference mix, backed up by coffer over NBD night after
// night, the later nights reading only the blocks changed block tracking
// reports; and the disk's images, exported from the pool, backed up by
// restic, which reads the whole image. It runs once, after the other
// scenarios, into local repositories only.
const scenarioXen = "xen"

// xenBlock is changed block tracking's granularity: 64 KiB.
const xenBlock = 64 << 10

// xenVM is the simulated VM, and so the name of coffer's snapshots.
const xenVM = "bench"

// Steps of the xen scenario, in the order they are reported.
const (
	xenNight1       = "night1"        // coffer: first night, the whole disk
	xenCBT          = "cbt"           // coffer: night 2, the changed blocks
	xenFullRead     = "full-read"     // coffer --full-read: night 3, nothing changed
	xenUnchanged    = "unchanged"     // coffer: night 4, nothing changed (fixed cost)
	xenResticFirst  = "restic-night1" // restic: night-1 image (not compared)
	xenResticSecond = "restic-second" // restic: night-2 image, its second night
	xenRestore      = "restore"       // coffer restore latest, compared with night 2
	xenDelta        = "delta-restore" // coffer restore --delta: a copy at night 1 brought to night 2
	xenProfiled     = "cbt-profile"   // coffer: night 5, as night 2 with a CPU profile (not compared)
)

var xenSteps = []string{xenNight1, xenCBT, xenFullRead, xenUnchanged, xenResticFirst, xenResticSecond, xenRestore, xenDelta, xenProfiled}

var xenStepTitles = map[string]string{
	xenNight1:       "coffer night 1 (full read)",
	xenCBT:          "coffer night 2 (CBT)",
	xenFullRead:     "coffer night 3 (--full-read)",
	xenUnchanged:    "coffer night 4 (CBT, no change)",
	xenResticFirst:  "restic night 1 (not compared)",
	xenResticSecond: "restic second night",
	xenRestore:      "coffer restore latest",
	xenDelta:        "coffer restore --delta (night 1 to 2)",
	xenProfiled:     "coffer night 5 (CBT, profiled)",
}

// XenResult is the xen scenario in bench.json.
type XenResult struct {
	Target          string  `json:"target"` // always local
	DiskSize        int64   `json:"disk_size"`
	Night1Allocated int64   `json:"night1_allocated"`
	Night2Allocated int64   `json:"night2_allocated"`
	ChangedPercent  float64 `json:"changed_percent"` // share of the blocks the guest wrote before night 2
	Blocks          int64   `json:"blocks"`          // 64 KiB blocks of the disk
	// ChangedBlocks, BytesRead (over NBD), ReadPercent (of the disk),
	// BytesFetched and BytesNew are coffer's CBT night's, from its summary.
	ChangedBlocks int64 `json:"changed_blocks"`
	BytesRead     int64 `json:"bytes_read"`
	ReadPercent   num   `json:"read_percent"`
	BytesFetched  int64 `json:"bytes_fetched"`
	BytesNew      int64 `json:"bytes_new"`
	Verified      *bool `json:"verified,omitempty"` // the restore equals the night-2 image
	// DeltaFetched is what the delta restore of a copy at night 1 to
	// night 2 downloaded; DeltaVerified, that the copy then equals night 2.
	DeltaFetched  int64       `json:"delta_fetched"`
	DeltaVerified *bool       `json:"delta_verified,omitempty"`
	SetupSeconds  float64     `json:"setup_seconds"` // image, pool and exports, not measured
	Steps         []*Step     `json:"steps"`
	Disks         []XenDisk   `json:"disks"`                    // coffer's nights, as its summaries tell
	ResticSkipped string      `json:"restic_skipped,omitempty"` // why restic did not run
	CPUProfile    string      `json:"cpu_profile,omitempty"`    // pprof of night 5, a CBT night like night 2
	Error         string      `json:"error,omitempty"`
	Notes         []string    `json:"notes,omitempty"`
	Pool          *XenPoolLog `json:"pool,omitempty"`
}

// XenPoolLog says where the simulator's logs are.
type XenPoolLog struct {
	ServeLog string `json:"serve_log"`
}

// XenDisk is what coffer's JSON summary of one night says of the disk.
type XenDisk struct {
	Step          string `json:"step"`
	Read          string `json:"read"` // changed or full
	Reason        string `json:"reason,omitempty"`
	Size          int64  `json:"size"`
	ChangedBlocks int64  `json:"changed_blocks"`
	BytesRead     int64  `json:"bytes_read"`
	BytesFetched  int64  `json:"bytes_fetched"`
	BytesNew      int64  `json:"bytes_new"`
	SnapshotID    string `json:"snapshot_id"`
}

// step returns a successful step of the scenario, or nil.
func (x *XenResult) step(name string) *Step {
	if x == nil {
		return nil
	}
	for _, st := range x.Steps {
		if st.Name == name && st.Error == "" {
			return st
		}
	}
	return nil
}

// disk returns coffer's disk figures of a step, or nil.
func (x *XenResult) disk(name string) *XenDisk {
	if x == nil {
		return nil
	}
	for i := range x.Disks {
		if x.Disks[i].Step == name {
			return &x.Disks[i]
		}
	}
	return nil
}

// xenRun is the state of one run of the scenario.
type xenRun struct {
	b              *bench
	x              *XenResult
	pool           *xenPool
	coffer, restic *Session
	cofferBin      string
	resticBin      string           // "" when restic does not run
	night1, night2 string           // the disk exported after night 1 and before night 2
	live           string           // the path restic backs up, a hard link to a night
	stored         map[string]int64 // session key -> bytes its repository held after its last backup
}

// runXen runs the xen scenario. A failure is recorded in the result, not
// returned; everything it starts is stopped before it returns.
func (b *bench) runXen(ctx context.Context) *XenResult {
	x := &XenResult{Target: targetLocal, DiskSize: b.cfg.XenSize, ChangedPercent: b.cfg.Changed * 100,
		Blocks: b.cfg.XenSize / xenBlock, ReadPercent: num(math.NaN())}
	xr := &xenRun{b: b, x: x, cofferBin: b.bins[toolCoffer], stored: map[string]int64{}}
	b.logf("xen: a VM with a %s disk in a simulated XenServer pool, target local only",
		humanize.IBytes(uint64(x.DiskSize)))
	if xr.cofferBin == "" {
		x.Error = "coffer is not in --tools or could not be built"
		b.logf("xen: skipped: %s", x.Error)
		return x
	}
	xr.pickRestic()
	defer xr.cleanup()
	if err := xr.run(ctx); err != nil {
		x.Error = err.Error()
		b.logf("xen: %v", err)
	}
	return x
}

// pickRestic decides whether restic runs, with a note when it does not.
func (xr *xenRun) pickRestic() {
	b := xr.b
	switch {
	case !slices.Contains(b.cfg.Tools, toolRestic):
		xr.x.ResticSkipped = "restic not selected (--tools, --peers): its second night not run"
	case b.bins[toolRestic] == "":
		xr.x.ResticSkipped = "restic missing: its second night not run"
	default:
		xr.resticBin = b.bins[toolRestic]
		return
	}
	xr.note(xr.x.ResticSkipped)
}

func (xr *xenRun) note(s string) {
	xr.x.Notes = append(xr.x.Notes, s)
	xr.b.logf("xen: %s", s)
}

func (xr *xenRun) cleanup() {
	if xr.pool != nil {
		xr.pool.stop()
	}
	for _, p := range []string{xr.night1, xr.night2, xr.live} {
		if p != "" && !xr.b.cfg.Keep {
			_ = os.Remove(p)
		}
	}
}

// run is the scenario's sequence; see doc.go.
func (xr *xenRun) run(ctx context.Context) error {
	if err := xr.setup(ctx); err != nil {
		return err
	}
	if err := xr.cofferStep(ctx, xenNight1); err != nil {
		return err
	}
	if xr.resticBin != "" {
		if err := xr.resticFirst(ctx); err != nil {
			return err
		}
	}
	if err := xr.guestWrites(ctx); err != nil {
		return err
	}
	for _, name := range []string{xenCBT, xenFullRead, xenUnchanged} {
		if err := xr.cofferStep(ctx, name); err != nil {
			return err
		}
	}
	if xr.resticBin != "" {
		if err := xr.resticSecond(ctx); err != nil {
			return err
		}
	}
	if err := xr.verify(ctx); err != nil {
		return err
	}
	xr.profile(ctx)
	return nil
}

// setup builds xapisim, makes the pool with the VM and its disk of the
// reference mix, serves it, and creates coffer's repository.
func (xr *xenRun) setup(ctx context.Context) error {
	b, x := xr.b, xr.x
	start := time.Now()
	bin, err := b.build(ctx, "xapisim")
	if err != nil {
		return err
	}
	runs := filepath.Join(b.cfg.Workdir, "runs")
	xr.pool = &xenPool{bin: bin, state: filepath.Join(runs, "xen-pool"), password: filepath.Join(runs, "xen-pool-password"),
		logDir: filepath.Join(b.cfg.Workdir, "logs"), timeout: b.cfg.StepTimeout}
	x.Pool = &XenPoolLog{ServeLog: xr.pool.serveLog()}
	seed := filepath.Join(b.cfg.Workdir, "images", "xen-seed.img")
	if err := diskgen.Generate(seed, x.DiskSize, b.cfg.Seed, diskgen.Options{}); err != nil {
		return fmt.Errorf("generating the VM's disk: %w", err)
	}
	defer os.Remove(seed)
	x.Night1Allocated, _ = allocated(seed)
	if err := xr.pool.create(ctx, x.DiskSize, seed); err != nil {
		return err
	}
	_ = os.Remove(seed) // the pool holds the data now
	syscall.Sync()
	if err := xr.pool.serve(ctx); err != nil {
		return err
	}
	x.SetupSeconds += time.Since(start).Seconds()
	b.logf("xen: pool serving on %s, VM %q with a %s disk (%s of data)", xr.pool.url, xenVM,
		humanize.IBytes(uint64(x.DiskSize)), humanize.IBytes(uint64(x.Night1Allocated)))
	xr.coffer = &Session{Tool: toolCoffer, Target: targetLocal, Scenario: scenarioXen}
	if _, err := b.prepare(ctx, xr.coffer, cofferDriver{}); err != nil {
		return fmt.Errorf("coffer: %w", err)
	}
	return nil
}

// xenArgv is coffer's backup of the VM.
func (xr *xenRun) backupArgv(fullRead bool) []string {
	argv := []string{xr.cofferBin, "--config", cofferDriver{}.config(xr.coffer), "backup", "--xen", xr.pool.url,
		"--xen-password-file", xr.pool.password, "--xen-fingerprint", xr.pool.fingerprint, "--vm", xenVM, "--json"}
	if fullRead {
		argv = append(argv, "--full-read")
	}
	return argv
}

// profile runs night 5 after the guest has written as much again, with
// coffer's CPU profile, after the measured steps so that profiling slows
// none of them. A failure is a note.
func (xr *xenRun) profile(ctx context.Context) {
	b := xr.b
	pct := strconv.FormatFloat(xr.x.ChangedPercent, 'g', -1, 64)
	if err := xr.pool.run(ctx, "write5", "disk", "write", xenVM, "0", "--random-blocks", pct,
		"--seed", strconv.FormatUint(b.cfg.Seed+2, 10)); err != nil {
		xr.note("no CPU profile: " + err.Error())
		return
	}
	path := filepath.Join(b.cfg.Workdir, "logs", "xen-cbt.pprof")
	argv := xr.backupArgv(false)
	argv = append([]string{argv[0], "--cpu-profile", path}, argv[1:]...)
	if err := xr.cofferNight(ctx, xenProfiled, argv); err != nil {
		xr.note("no CPU profile: " + err.Error())
		return
	}
	xr.x.CPUProfile = path
}

// cofferStep runs and measures one of coffer's nights of the VM.
func (xr *xenRun) cofferStep(ctx context.Context, name string) error {
	return xr.cofferNight(ctx, name, xr.backupArgv(name == xenFullRead))
}

// cofferNight runs and measures a night of coffer's (argv) and records
// what its summary says of the disk.
func (xr *xenRun) cofferNight(ctx context.Context, name string, argv []string) error {
	b, x := xr.b, xr.x
	b.logf("xen: %s", xenStepTitles[name])
	st, out, err := xr.measured(ctx, xr.coffer, name, argv, xr.pool.state)
	x.Steps = append(x.Steps, st)
	var d XenDisk
	if err == nil {
		st.Summary, d, err = parseXenSummary(out)
	}
	if err == nil {
		err = xr.recordStored(ctx, xr.coffer, st)
	}
	if err != nil {
		st.Error = err.Error()
		return fmt.Errorf("%s: %w", xenStepTitles[name], err)
	}
	d.Step = name
	x.Disks = append(x.Disks, d)
	if name == xenCBT {
		x.ChangedBlocks, x.BytesRead, x.BytesFetched, x.BytesNew = d.ChangedBlocks, d.BytesRead, d.BytesFetched, d.BytesNew
		x.ReadPercent = num(100 * float64(d.BytesRead) / float64(x.DiskSize))
		if d.Read != "changed" {
			xr.note(fmt.Sprintf("night 2 read the whole disk, not its changed blocks: %s", d.Reason))
		}
	}
	how := d.Read
	if d.Reason != "" {
		how += " (" + d.Reason + ")"
	}
	b.logf("xen: %s: %.2fs, %.0f MB/s, read %s, %d changed blocks, read %s over NBD, %s new",
		xenStepTitles[name], st.WallSeconds, st.MBps, how, d.ChangedBlocks,
		humanize.IBytes(uint64(d.BytesRead)), humanize.IBytes(uint64(d.BytesNew)))
	return nil
}

// recordStored records the bytes and files the session's repository holds
// after a backup, and how much it grew.
func (xr *xenRun) recordStored(ctx context.Context, s *Session, st *Step) error {
	var err error
	st.StoredBytes, st.Objects, err = xr.b.stored(ctx, s)
	st.StoredDelta = st.StoredBytes - xr.stored[s.key()]
	xr.stored[s.key()] = st.StoredBytes
	return err
}

// measured runs a measured step of the scenario (b.measured) with the disk
// size as its image bytes, and records the simulator's CPU time during it.
func (xr *xenRun) measured(ctx context.Context, s *Session, name string, argv []string, inputs ...string) (*Step, []byte, error) {
	cpu0 := xr.pool.cpuSeconds()
	st, out, err := xr.b.measured(ctx, s, name, argv, xr.x.DiskSize, inputs...)
	st.ServerCPU = xr.pool.cpuSeconds() - cpu0
	return st, out, err
}

// resticFirst exports night 1 and backs it up with restic, unmeasured;
// the export is deleted afterwards to keep the disk space low.
func (xr *xenRun) resticFirst(ctx context.Context) error {
	b := xr.b
	xr.night1 = filepath.Join(b.cfg.Workdir, "images", "xen-night1.img")
	xr.live = filepath.Join(b.cfg.Workdir, "live", "xen.img")
	start := time.Now()
	if err := xr.pool.run(ctx, "export1", "disk", "export", xenVM, "0", xr.night1); err != nil {
		return err
	}
	xr.x.SetupSeconds += time.Since(start).Seconds()
	xr.restic = &Session{Tool: toolRestic, Target: targetLocal, Scenario: scenarioXen}
	if _, err := b.prepare(ctx, xr.restic, resticDriver{}); err != nil {
		return fmt.Errorf("restic: %w", err)
	}
	if err := relink(xr.night1, xr.live); err != nil {
		return err
	}
	b.logf("xen: %s", xenStepTitles[xenResticFirst])
	st := &Step{Name: xenResticFirst, Argv: resticDriver{}.backup(xr.restic, xr.resticBin, xr.live, xenVM),
		ImageBytes: xr.x.DiskSize, Log: b.logPath(xr.restic, xenResticFirst)}
	out, u, err := b.exec(ctx, xr.restic, xenResticFirst, st.Argv)
	st.setUsage(u)
	xr.x.Steps = append(xr.x.Steps, st)
	if err == nil {
		st.Summary, _, err = resticDriver{}.parseBackup(out)
	}
	if err == nil {
		err = xr.recordStored(ctx, xr.restic, st)
	}
	if err != nil {
		st.Error = err.Error()
		return fmt.Errorf("%s: %w", xenStepTitles[xenResticFirst], err)
	}
	if err := os.Remove(xr.live); err != nil {
		return err
	}
	return os.Remove(xr.night1)
}

// setUsage records a child's figures in the step.
func (st *Step) setUsage(u usage) {
	st.WallSeconds, st.UserSeconds, st.SysSeconds = u.wall.Seconds(), u.user.Seconds(), u.sys.Seconds()
	st.CPUSeconds = st.UserSeconds + st.SysSeconds
	st.MaxRSSKiB = u.maxRSSKiB
	if st.WallSeconds > 0 {
		st.MBps = float64(st.ImageBytes) / 1e6 / st.WallSeconds
	}
}

// guestWrites writes the changed share of the disk's blocks as the guest
// would, and exports the disk as the night-2 image.
func (xr *xenRun) guestWrites(ctx context.Context) error {
	b := xr.b
	start := time.Now()
	pct := strconv.FormatFloat(xr.x.ChangedPercent, 'g', -1, 64)
	if err := xr.pool.run(ctx, "write", "disk", "write", xenVM, "0", "--random-blocks", pct,
		"--seed", strconv.FormatUint(b.cfg.Seed+1, 10)); err != nil {
		return err
	}
	xr.night2 = filepath.Join(b.cfg.Workdir, "images", "xen-night2.img")
	if err := xr.pool.run(ctx, "export2", "disk", "export", xenVM, "0", xr.night2); err != nil {
		return err
	}
	syscall.Sync()
	xr.x.Night2Allocated, _ = allocated(xr.night2)
	xr.x.SetupSeconds += time.Since(start).Seconds()
	b.logf("xen: the guest wrote %g%% of the disk's blocks; night 2 exported", xr.x.ChangedPercent)
	return nil
}

// resticSecond measures restic's backup of the night-2 image from the path
// it backed up night 1 from.
func (xr *xenRun) resticSecond(ctx context.Context) error {
	b := xr.b
	if err := relink(xr.night2, xr.live); err != nil {
		return err
	}
	b.logf("xen: %s", xenStepTitles[xenResticSecond])
	argv := resticDriver{}.backup(xr.restic, xr.resticBin, xr.live, xenVM)
	st, out, err := xr.measured(ctx, xr.restic, xenResticSecond, argv, xr.live)
	xr.x.Steps = append(xr.x.Steps, st)
	if err == nil {
		st.Summary, _, err = resticDriver{}.parseBackup(out)
	}
	if err == nil {
		err = xr.recordStored(ctx, xr.restic, st)
	}
	if err != nil {
		st.Error = err.Error()
		return fmt.Errorf("%s: %w", xenStepTitles[xenResticSecond], err)
	}
	b.logf("xen: %s: %.2fs, %.0f MB/s", xenStepTitles[xenResticSecond], st.WallSeconds, st.MBps)
	return nil
}

// verify restores the latest snapshot (night 4's, with night 2's content)
// and compares it with the night-2 image.
func (xr *xenRun) verify(ctx context.Context) error {
	b, s := xr.b, xr.coffer
	outDir := filepath.Join(s.dir, "restore")
	if err := cleanDir(outDir); err != nil {
		return err
	}
	defer os.RemoveAll(outDir)
	b.logf("xen: %s", xenStepTitles[xenRestore])
	argv, restored := cofferDriver{}.restore(s, xr.cofferBin, backupRef{name: xenVM}, outDir)
	st, _, err := xr.measured(ctx, s, xenRestore, argv, s.repoDir)
	xr.x.Steps = append(xr.x.Steps, st)
	if err != nil {
		return fmt.Errorf("%s: %w", xenStepTitles[xenRestore], err)
	}
	same, err := testfile.Equal(restored, xr.night2)
	if err != nil {
		st.Error = err.Error()
		return err
	}
	xr.x.Verified = &same
	st.Verified = &same
	st.RestoredAlloc, _ = allocated(restored)
	if !same {
		st.Error = "the restored disk differs from the night-2 image"
		return fmt.Errorf("%s: %s", xenStepTitles[xenRestore], st.Error)
	}
	b.logf("xen: restore: %.2fs, %.0f MB/s, equal to the night-2 image", st.WallSeconds, st.MBps)
	return xr.delta(ctx, restored)
}

// delta takes the restored copy back to night 1 (unmeasured), then
// measures the delta restore that brings it to night 2 again, and compares
// it with the night-2 image: the failback of a disk 1% of whose blocks
// changed.
func (xr *xenRun) delta(ctx context.Context, copyPath string) error {
	b, s := xr.b, xr.coffer
	n1 := xr.x.disk(xenNight1)
	if n1 == nil || n1.SnapshotID == "" {
		return nil
	}
	cfg := cofferDriver{}.config(s)
	back := []string{xr.cofferBin, "--config", cfg, "restore", n1.SnapshotID, "--delta", "--to", copyPath}
	if _, _, err := b.exec(ctx, s, "delta-back", back); err != nil {
		return fmt.Errorf("bringing the restored copy back to night 1: %w", err)
	}
	b.logf("xen: %s", xenStepTitles[xenDelta])
	argv := []string{xr.cofferBin, "--config", cfg, "restore", "latest", "--name", xenVM, "--delta", "--to", copyPath, "--json"}
	st, out, err := xr.measured(ctx, s, xenDelta, argv, s.repoDir, copyPath)
	xr.x.Steps = append(xr.x.Steps, st)
	if err != nil {
		return fmt.Errorf("%s: %w", xenStepTitles[xenDelta], err)
	}
	if m, ok := lastJSON(out, func(m map[string]any) bool { return m["type"] == "summary" }); ok {
		st.Summary = m
		if v, ok := m["bytes_fetched"].(float64); ok {
			xr.x.DeltaFetched = int64(v)
		}
	}
	same, err := testfile.Equal(copyPath, xr.night2)
	if err != nil {
		st.Error = err.Error()
		return err
	}
	xr.x.DeltaVerified = &same
	if !same {
		st.Error = "the copy after the delta restore differs from the night-2 image"
		return fmt.Errorf("%s: %s", xenStepTitles[xenDelta], st.Error)
	}
	b.logf("xen: delta restore: %.2fs, fetched %s, equal to the night-2 image", st.WallSeconds, humanize.IBytes(uint64(xr.x.DeltaFetched)))
	return nil
}

// xenPool is the simulated pool: xapisim's state folder and its server.
type xenPool struct {
	bin, state, password string
	logDir               string
	timeout              time.Duration
	url, fingerprint     string
	cmd                  *exec.Cmd
	done                 chan struct{}
}

func (p *xenPool) serveLog() string { return filepath.Join(p.logDir, "xen-xapisim-serve.log") }

// run runs one xapisim command on the pool, unmeasured.
func (p *xenPool) run(ctx context.Context, name string, args ...string) error {
	argv := append([]string{p.bin, args[0], "--state", p.state}, args[1:]...)
	_, _, err := command(ctx, p.timeout, filepath.Dir(p.state), cleanEnv(filepath.Dir(p.state)), argv,
		filepath.Join(p.logDir, "xen-xapisim-"+name+".log"))
	return err
}

// create makes the pool, the VM with a disk of size bytes, and writes the
// image onto the disk.
func (p *xenPool) create(ctx context.Context, size int64, image string) error {
	if err := os.RemoveAll(p.state); err != nil { // a killed run's leftovers
		return err
	}
	if err := os.WriteFile(p.password, []byte(randomSecret()+"\n"), 0o600); err != nil {
		return err
	}
	if err := p.run(ctx, "init", "init", "--password-file", p.password); err != nil {
		return err
	}
	if err := p.run(ctx, "vm", "vm", "create", xenVM, "--disk", strconv.FormatInt(size, 10)); err != nil {
		return err
	}
	return p.run(ctx, "import", "disk", "import", xenVM, "0", image)
}

// serve starts xapisim serve on loopback and waits for its serve.json.
// The caller must stop it.
func (p *xenPool) serve(ctx context.Context) error {
	p.done = make(chan struct{})
	p.cmd = exec.Command(p.bin, "serve", "--state", p.state, "--listen", "127.0.0.1:0", "--nbd-listen", "127.0.0.1:0")
	p.cmd.Env = cleanEnv(filepath.Dir(p.state))
	if err := startServer(p.cmd, p.serveLog(), p.done); err != nil {
		return fmt.Errorf("starting xapisim serve: %w", err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("xapisim serve exited at start (log %s)", p.serveLog())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := os.Stat(filepath.Join(p.state, "serve.json")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("xapisim serve wrote no serve.json within a minute (log %s)", p.serveLog())
		}
	}
	info, err := xapisim.ReadServeInfo(p.state)
	if err != nil {
		return err
	}
	p.url, p.fingerprint, err = checkServeInfo(info)
	return err
}

var fingerprintRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkServeInfo checks the URL and certificate fingerprint serve.json
// gives: an https URL on loopback and a SHA-256 in hex.
func checkServeInfo(info *xapisim.ServeInfo) (url, fingerprint string, err error) {
	host, ok := strings.CutPrefix(info.URL, "https://")
	if !ok || !(strings.HasPrefix(host, "127.0.0.1:") || strings.HasPrefix(host, "[::1]:")) {
		return "", "", fmt.Errorf("xapisim serve.json: url %q is not https on loopback", info.URL)
	}
	if !fingerprintRE.MatchString(info.Fingerprint) {
		return "", "", errors.New("xapisim serve.json: fingerprint is not a SHA-256 in lowercase hex")
	}
	return info.URL, info.Fingerprint, nil
}

// stop ends xapisim serve: SIGTERM, then SIGKILL after 10 seconds.
func (p *xenPool) stop() {
	if p.cmd != nil {
		stopServer(p.cmd, p.done, 10*time.Second)
	}
}

// cpuSeconds is the CPU time xapisim serve has used so far.
func (p *xenPool) cpuSeconds() float64 {
	if p == nil || p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return processCPUSeconds(p.cmd.Process.Pid)
}
