package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/agent"
	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/buildinfo"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/localstate"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/xenapi"
	"github.com/cofferhq/coffer/uploader"
	"github.com/cofferhq/coffer/uploader/source"
)

// agentFlags are coffer agent's own flags.
type agentFlags struct {
	checkConfig   string
	history       bool
	once          bool
	plainLoopback bool
}

func newAgentCmd(g *globals) *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent [--check-config FILE | --history | --once]",
		Short: "Run the config file's backups on its schedule until stopped",
		Long: `Run the backups the config file (--config) lists, its images and the VMs of
its XenServer pools, on its cron schedule, until stopped. Traffic to the
repository keeps to the bandwidth windows; a failed run is tried again
with growing waits; a run missed while the machine slept runs once on
wake. SIGTERM or SIGINT stops it cleanly (exit 0): the run in flight stops
and the next one resumes where it stopped. Each run leaves a record in
the repository (runs/, readable by the vault without keys) and on this
machine (--history).

--check-config FILE checks a config file and prints its next 5 runs.
--once runs the backups once now, with the retries, and exits.
See README.md, "coffer agent", for the config file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.checkConfig != "" {
				return g.agentCheck(f.checkConfig)
			}
			plan, err := g.agentPlan(g.configPath)
			if err != nil {
				return err
			}
			if f.history {
				return g.agentHistory(plan)
			}
			return g.serveAgent(cmd.Context(), plan, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.checkConfig, "check-config", "", "check this config file and print its next 5 runs, then exit")
	fl.BoolVar(&f.history, "history", false, "print the runs this machine remembers, then exit")
	fl.BoolVar(&f.once, "once", false, "run the backups once now (with retries), then exit")
	fl.BoolVar(&f.plainLoopback, "xen-plain-loopback", false, "allow plain http:// pool URLs on a loopback address (tests and the simulator)")
	_ = fl.MarkHidden("xen-plain-loopback")
	return cmd
}

// agentPlan reads and checks the config file at path.
func (g *globals) agentPlan(path string) (*agent.Plan, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{Err: fmt.Errorf("reading the agent config: %w (give it with --config FILE)", err)}
	}
	var c agentConfig
	if err := agent.DecodeStrict(b, &c); err != nil {
		return nil, usageError{Err: fmt.Errorf("config %s: %v", path, err)}
	}
	plan, err := c.Config.Plan()
	if err != nil {
		return nil, usageError{Err: fmt.Errorf("config %s: %v", path, err)}
	}
	if g.repoURL == "" && c.Repository == "" {
		return nil, usageError{Err: fmt.Errorf("config %s: no repository: add repository: URL (or run coffer init)", path)}
	}
	return plan, nil
}

// agentCheck is --check-config: the file is checked and its next runs
// printed.
func (g *globals) agentCheck(path string) error {
	plan, err := g.agentPlan(path)
	if err != nil {
		return err
	}
	runs := plan.NextRuns(clock.Real.Now(), 5)
	if g.json {
		g.printJSON(map[string]any{"type": "config", "valid": true, "next_runs": runs, "time_zone": plan.Location().String(),
			"images": len(plan.Images), "pools": len(plan.Pools)})
		return nil
	}
	g.say("config %s is valid: %d images, %d pools", path, len(plan.Images), len(plan.Pools))
	g.say("next runs (%s):", plan.Location())
	for _, t := range runs {
		g.say("  %s, upload limit %s", t.Format("Mon 2006-01-02 15:04 MST"), rateText(plan.Windows().Limits(t).Put))
	}
	return nil
}

// rateText is a limit in bytes per second for people.
func rateText(bytesPerSecond int64) string {
	if bytesPerSecond <= 0 {
		return "none"
	}
	return humanBytes(bytesPerSecond) + "/s"
}

// agentHistory is where the agent keeps its runs on this machine.
func agentHistory(plan *agent.Plan) (agent.History, error) {
	dir := localstate.Dir("agent")
	if dir == "" {
		return agent.History{}, errors.New("no state directory for the run history: set XDG_STATE_HOME or HOME")
	}
	return agent.History{Dir: dir, Keep: plan.History}, nil
}

// agentHistory is --history.
func (g *globals) agentHistory(plan *agent.Plan) error {
	h, err := agentHistory(plan)
	if err != nil {
		return err
	}
	recs, err := h.Load()
	if err != nil {
		return err
	}
	if g.json {
		if recs == nil {
			recs = []agent.Record{}
		}
		g.printJSON(map[string]any{"type": "history", "runs": recs})
		return nil
	}
	if len(recs) == 0 {
		g.say("no runs yet (%s)", filepath.Join(h.Dir, agent.HistoryFile))
	}
	for _, r := range recs {
		line := fmt.Sprintf("%s  %-11s %3d snapshots  %10s  %6.0fs  %d tries", r.Scheduled.Local().Format("2006-01-02 15:04"), r.Result,
			len(r.Snapshots), humanBytes(r.Bytes), r.Finished.Sub(r.Started).Seconds(), r.Attempts)
		if r.Error != "" {
			line += "  " + termtext.Clean(r.Error)
		}
		g.say("%s", line)
	}
	return nil
}

// serveAgent runs the schedule (or one run with --once) until ctx ends.
func (g *globals) serveAgent(ctx context.Context, plan *agent.Plan, f agentFlags) error {
	if g.passwordFile == "" {
		g.passwordFile = plan.PasswordFile
	}
	g.bandwidth = store.NewBandwidth(nil, plan.Windows().Limits)
	hist, err := agentHistory(plan)
	if err != nil {
		return err
	}
	release, err := agent.Lock(hist.Dir)
	if err != nil {
		return err
	}
	defer release()
	log := g.agentLog()
	recs, err := hist.Load()
	if err != nil {
		log.Warn("the run history is unreadable; starting a new one", "error", err.Error())
	}
	a := &agent.Agent{Plan: plan, Log: log, Last: agent.LastScheduled(recs), Version: buildinfo.Version(),
		Run:    func(ctx context.Context) (agent.Outcome, error) { return g.agentRun(ctx, plan, f) },
		Record: func(ctx context.Context, r agent.Record) error { return g.keepRecord(ctx, hist, r) }}
	if f.once {
		_, err := a.RunNow(ctx, clock.Real.Now())
		if ctx.Err() != nil {
			return nil // a clean stop: the next run resumes
		}
		return err
	}
	return a.Serve(ctx)
}

func (g *globals) agentLog() *slog.Logger {
	if g.json {
		return slog.New(slog.NewJSONHandler(g.stderr, nil))
	}
	return slog.New(slog.NewTextHandler(g.stderr, nil))
}

// keepRecord keeps a run's record on this machine and in the repository.
func (g *globals) keepRecord(ctx context.Context, h agent.History, r agent.Record) error {
	errLocal := h.Add(r)
	url, err := g.repository()
	if err == nil {
		var st store.Store
		if st, err = g.openStore(ctx, url, false); err == nil {
			err = agent.Publish(ctx, st, r)
			st.Close()
		}
	}
	return errors.Join(errLocal, err)
}

// agentRun is one run: every image, then every pool. A source that fails
// does not stop the others; the run is partial when some were saved.
func (g *globals) agentRun(ctx context.Context, plan *agent.Plan, f agentFlags) (agent.Outcome, error) {
	var out agent.Outcome
	r, err := g.openRepo(ctx)
	if err != nil {
		return out, permanentIf(err)
	}
	if err := g.loadIndex(ctx, r); err != nil {
		return out, err
	}
	if err := g.watchSeeds(ctx, r); err != nil {
		return out, err
	}
	var errs []error
	for _, im := range plan.Images {
		res, err := g.agentImage(ctx, r, im)
		if err != nil {
			errs = append(errs, fmt.Errorf("image %s: %w", im.Path, err))
		} else {
			out.Bytes += res.StoredBytes
			out.Snapshots = append(out.Snapshots, res.SnapshotID)
		}
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	for _, p := range plan.Pools {
		if err := g.agentPool(ctx, r, p, f.plainLoopback, &out); err != nil {
			errs = append(errs, fmt.Errorf("pool %s: %w", p.URL, err))
		}
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	out.Partial = len(errs) > 0 && len(out.Snapshots) > 0
	return out, errors.Join(errs...)
}

// permanentIf marks the errors no retry fixes: how the agent is set up.
func permanentIf(err error) error {
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, repo.ErrNoRepository) || errors.Is(err, crypto.ErrWrongPassphrase) {
		return agent.Permanent(err)
	}
	return err
}

func (g *globals) agentImage(ctx context.Context, r *repo.Repo, im agent.ImageSource) (*uploader.Result, error) {
	src, err := source.OpenImage(im.Path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	name := im.Name
	if name == "" {
		name = filepath.Base(im.Path)
	}
	start := clock.Start()
	res, err := g.backupImage(ctx, r, src, uploader.Options{Name: name, Tags: im.Tags})
	if err != nil {
		return nil, err
	}
	res.Duration = start.Elapsed()
	g.backupSummary(res)
	return res, nil
}

// agentPool backs up the VMs of pool p its rules choose.
func (g *globals) agentPool(ctx context.Context, r *repo.Repo, p agent.PoolSource, plainLoopback bool, out *agent.Outcome) error {
	c := xenConfig{URL: p.URL, User: p.User, PasswordFile: p.PasswordFile, CA: p.CA, Fingerprint: p.Fingerprint, Parallel: p.Parallel}
	if c.User == "" {
		c.User = "root"
	}
	xs, err := g.xenLogin(ctx, c, plainLoopback)
	if err != nil {
		return permanentIf(err)
	}
	defer xs.Logout(context.WithoutCancel(ctx))
	all, err := xs.GetAllVMs(ctx)
	if err != nil {
		return fmt.Errorf("listing the pool's VMs: %w", err)
	}
	if c.VMs = p.SelectVMs(poolVMs(all)); len(c.VMs) == 0 {
		return agent.Permanent(errors.New("no VM of the pool matches the config's include and exclude rules"))
	}
	start := clock.Start()
	res, err := g.xenNight(ctx, r, xs, c, false, p.Tags, uploader.SessionOptions{})
	if err != nil {
		return err
	}
	res.Duration = start.Elapsed()
	g.xenSummary(res)
	for _, v := range res.VMs {
		if v.SnapshotID != "" {
			out.Snapshots = append(out.Snapshots, v.SnapshotID)
		}
	}
	out.Bytes += res.StoredBytes
	return xenFailure(res)
}

// poolVMs are the pool's VMs that can be backed up (never templates,
// snapshots or the control domain), by name.
func poolVMs(all map[xenapi.Ref]xenapi.VM) []agent.VM {
	var vms []agent.VM
	for _, vm := range all {
		if !vm.IsATemplate && !vm.IsASnapshot && !vm.IsControlDomain {
			vms = append(vms, agent.VM{Name: vm.NameLabel, UUID: vm.UUID, Tags: vm.Tags})
		}
	}
	sort.Slice(vms, func(i, j int) bool { return vms[i].Name < vms[j].Name })
	return vms
}
