package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// usage is what one child process cost.
type usage struct {
	wall, user, sys time.Duration
	maxRSSKiB       int64
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// command runs argv in the session's directory and environment with the
// step timeout, in its own process group, killed with the group when ctx
// ends or the timeout passes. Stdout and stderr go to logPath; it returns
// the tail of stdout (where summaries are) and the child's usage.
func command(ctx context.Context, timeout time.Duration, dir string, env, argv []string, logPath string) ([]byte, usage, error) {
	var u usage
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, u, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ %s\n", strings.Join(argv, " "))

	stdout := &tailBuffer{max: 1 << 20}
	stderr := &tailBuffer{max: 4 << 10}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = nil
	cmd.Stdout = io.MultiWriter(logf, stdout)
	cmd.Stderr = io.MultiWriter(logf, stderr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second

	start := time.Now()
	err = cmd.Run()
	u.wall = time.Since(start)
	if ps := cmd.ProcessState; ps != nil {
		u.user, u.sys = ps.UserTime(), ps.SystemTime()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			u.maxRSSKiB = ru.Maxrss // KiB on Linux
		}
	}
	fmt.Fprintf(logf, "# exit: %v, wall %.2fs, user %.2fs, sys %.2fs, maxrss %d KiB\n",
		err, u.wall.Seconds(), u.user.Seconds(), u.sys.Seconds(), u.maxRSSKiB)
	if err != nil {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			err = fmt.Errorf("%s timed out after %v", filepath.Base(argv[0]), timeout)
		case ctx.Err() != nil:
			err = fmt.Errorf("%s: %w", filepath.Base(argv[0]), ctx.Err())
		default:
			msg := strings.TrimSpace(string(stderr.buf))
			if msg == "" {
				msg = strings.TrimSpace(string(lastLines(stdout.buf, 3)))
			}
			err = fmt.Errorf("%s %s: %v: %s (log %s)", filepath.Base(argv[0]), argv[1], err,
				lastLines([]byte(msg), 3), logPath)
		}
	}
	return stdout.buf, u, err
}

// lastLines returns the last n lines of p.
func lastLines(p []byte, n int) []byte {
	lines := bytes.Split(bytes.TrimSpace(p), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte(" | "))
}

func (b *bench) logPath(s *Session, name string) string {
	return filepath.Join(b.cfg.Workdir, "logs", s.key()+"-"+name+".log")
}

// exec runs an unmeasured child of a session.
func (b *bench) exec(ctx context.Context, s *Session, name string, argv []string) ([]byte, usage, error) {
	return command(ctx, b.cfg.StepTimeout, s.dir, s.env, argv, b.logPath(s, name))
}

// settle puts the page cache in the same state before every measured step,
// whichever tool ran before: what earlier steps wrote is flushed (so its
// write-back is not charged to this step), clean pages are dropped when the
// bench runs as root (so no step pays for reclaiming memory that earlier
// steps filled), and then the step's inputs are read once, so every tool
// starts with its inputs cached. Last, it waits until the machine is quiet,
// so that no step is charged for work an earlier one left running (MinIO's
// background scanner after a burst of writes, the kernel's write-back, and
// on a VM the host taking back the memory the dropped cache freed).
func (b *bench) settle(inputs ...string) error {
	syscall.Sync()
	if b.keepCache {
		return b.warm(inputs)
	}
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil && !b.noDrop {
		b.noDrop = true
		b.logf("page cache not dropped between steps (%v); results are noisier", err)
		b.res.Notes = append(b.res.Notes, "page cache not dropped between steps: "+err.Error())
	}
	if err := b.warm(inputs); err != nil {
		return err
	}
	// A guest whose kernel reports free pages without a pause, idle or
	// not (seen on the bench VM: about 250 MB/s, for hours), would hold
	// every step for the whole limit; after the first such wait, later
	// steps give the burst that dropping the cache starts a few seconds
	// only, and it is noted once.
	limit := quietLimit
	if b.endlessReporting {
		limit = reportingBurst
	}
	if waited, ok := waitPageReporting(reportingStable, limit); !ok && !b.endlessReporting {
		b.endlessReporting = true
		b.logf("the guest kept reporting free pages to the host for %v; later steps wait %v for it at most, and figures are noisier", waited, reportingBurst)
		b.res.Notes = append(b.res.Notes, "the guest reports free pages to the host without a pause")
	}
	if waited, ok := waitQuiet(quietWindow, quietLimit); !ok {
		b.logf("the machine did not go quiet within %v (more than %.0f%% of a CPU busy); this step's figures are noisier", waited, quietBusy*100)
	}
	return nil
}

// warm reads each input once (warmTree).
func (b *bench) warm(inputs []string) error {
	for _, in := range inputs {
		if err := warmTree(in); err != nil {
			return fmt.Errorf("warming %s: %w", in, err)
		}
	}
	return nil
}

// reportingFile counts the memory a virtio-balloon guest has handed back to
// its host (free page reporting); it exists only on kernels that report.
const reportingFile = "/sys/module/page_reporting/parameters/reported_kib"

// reportingStable is how long the count must stay still for the reporting
// to be over: the kernel reports in waves about 2 s apart.
const reportingStable = 2500 * time.Millisecond

// reportingBurst is how long a step waits for the reporting that dropping
// the cache starts, on a guest that never stops reporting: three waves.
const reportingBurst = 6 * time.Second

// waitPageReporting waits, for at most limit, until the guest has stopped
// reporting freed pages to the host. Dropping the page cache frees
// gigabytes; the guest then reports them in waves for seconds, and while
// the host unmaps them it takes CPU from this VM: measured on the bench VM,
// a third of both CPUs for about a second, which made a 3.4 s restore take
// 3.75 s. Where the file does not exist it does not wait.
func waitPageReporting(stable, limit time.Duration) (time.Duration, bool) {
	read := func() (string, error) {
		b, err := os.ReadFile(reportingFile)
		return strings.TrimSpace(string(b)), err
	}
	start := time.Now()
	last, err := read()
	if err != nil {
		return 0, true
	}
	since := time.Now()
	for time.Since(start) < limit {
		time.Sleep(100 * time.Millisecond)
		cur, err := read()
		if err != nil {
			return time.Since(start), true
		}
		if cur != last {
			last, since = cur, time.Now()
		} else if time.Since(since) >= stable {
			return time.Since(start), true
		}
	}
	return time.Since(start), false
}

// The machine counts as quiet when, over quietWindow, its CPUs were busy
// for less than quietBusy of one CPU's time; settle waits at most quietLimit.
const (
	quietWindow = 500 * time.Millisecond
	quietBusy   = 0.05
	quietLimit  = 20 * time.Second
)

// waitQuiet waits until the machine is quiet, for at most limit. It returns
// how long it waited and whether the machine went quiet. Where /proc/stat
// cannot be read it does not wait.
func waitQuiet(window, limit time.Duration) (time.Duration, bool) {
	start := time.Now()
	prev, err := cpuBusyTicks()
	if err != nil {
		return 0, true
	}
	for time.Since(start) < limit {
		time.Sleep(window)
		cur, err := cpuBusyTicks()
		if err != nil {
			return time.Since(start), true
		}
		// /proc/stat counts in USER_HZ ticks, 100 per second on Linux.
		if busy := float64(cur-prev) / 100; busy < quietBusy*window.Seconds() {
			return time.Since(start), true
		}
		prev = cur
	}
	return time.Since(start), false
}

// cpuBusyTicks returns the ticks all CPUs spent running something (user,
// nice, system, irq and softirq time; not idle, I/O wait or steal).
func cpuBusyTicks() (uint64, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += v
	}
	return busy, nil
}

// measured runs one step of a session and measures it (the caller records
// it in the session); imageBytes is the logical size the throughput is
// computed from; inputs are the files or directories the step reads, cached
// before it starts (see settle).
func (b *bench) measured(ctx context.Context, s *Session, name string, argv []string, imageBytes int64, inputs ...string) (*Step, []byte, error) {
	st := &Step{Name: name, Argv: argv, ImageBytes: imageBytes, Log: b.logPath(s, name)}
	if err := b.settle(inputs...); err != nil {
		return st, nil, err
	}
	var cpu0 float64
	if s.Target == targetS3 && b.minio != nil {
		cpu0 = b.minio.cpuSeconds()
	}
	out, u, err := b.exec(ctx, s, name, argv)
	if s.Target == targetS3 && b.minio != nil {
		st.ServerCPU = b.minio.cpuSeconds() - cpu0
	}
	st.WallSeconds = u.wall.Seconds()
	st.UserSeconds = u.user.Seconds()
	st.SysSeconds = u.sys.Seconds()
	st.CPUSeconds = st.UserSeconds + st.SysSeconds
	st.MaxRSSKiB = u.maxRSSKiB
	if st.WallSeconds > 0 {
		st.MBps = float64(imageBytes) / 1e6 / st.WallSeconds
	}
	if err != nil {
		st.Error = err.Error()
	}
	return st, out, err
}
