package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/vault"
)

func init() { serveCommand = newServeCmd }

func newServeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the vault's HTTPS API for agents",
		Long: "Serve the agent API over HTTPS (plain HTTP only on a loopback address or with --allow-plain-http), " +
			"with Prometheus metrics and /healthz on --metrics-listen. SIGTERM drains and shuts down gracefully.",
		Args: cobra.NoArgs,
	}
	sc := vault.ServeFlags(cmd.Flags())
	storeWait := cmd.Flags().Duration("store-wait", 60*time.Second,
		"at startup, how long to keep retrying a store that is not reachable yet (0: fail at once)")
	drills := addServeDrillFlags(cmd.Flags())
	maintain := addServeMaintenanceFlags(cmd.Flags())
	cmd.Flags().BoolVar(&g.createVault, "init", false, "create the vault when the store holds none, as cofferd init does (quick start, compose)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := sc.Validate(); err != nil {
			return usageError{Err: err}
		}
		if *storeWait < 0 {
			return usageError{Err: errors.New("--store-wait must not be negative")}
		}
		if err := drills.validate(); err != nil {
			return err
		}
		if err := maintain.validate(); err != nil {
			return err
		}
		return serve(cmd.Context(), g, sc, *storeWait, drills, maintain)
	}
	return cmd
}

func serve(ctx context.Context, g *globals, sc *vault.ServeConfig, storeWait time.Duration, drills *serveDrills, maintain *serveMaintenance) error {
	g.rates = sc.StoreRates()
	g.publicEndpoint = sc.DirectEndpoint
	data, reg, led, err := g.openStateWait(ctx, storeWait)
	if err != nil {
		return err
	}
	defer data.Close()
	if err := reg.EnsureFormat(ctx); err != nil {
		return err
	}
	// Registry and usage updates rely on conditional writes: refuse to
	// start on a store that silently ignores them.
	if err := store.ProbeConditional(ctx, data); err != nil {
		return fmt.Errorf("refusing to serve: %w", err)
	}
	// A local directory store keeps the half-written files of a killed
	// cofferd until someone removes them: sweep at start and periodically.
	go store.SweepTemp(ctx, data, store.TempSweepInterval, func(r store.TempReport, err error) {
		if r.Removed > 0 || err != nil {
			g.log.Info("temporary files of dead writers", "removed", r.Removed, "bytes", r.Bytes, "err", err)
		}
	})
	if drills != nil && drills.every > 0 {
		go g.drillLoop(ctx, drills, nil)
	}
	if maintain != nil && maintain.every > 0 {
		go g.maintainLoop(ctx, data, reg, led, maintain)
	}
	cfg := vault.Config{Data: data, Limits: sc.Limits(), Direct: sc.Direct(), Log: g.log, Clock: g.clock}
	cfg.Collectors = append(cfg.Collectors, g.statusCollector(data, reg, led))
	(&vault.State{Registry: reg, Ledger: led}).Configure(&cfg)
	srv, err := vault.New(cfg)
	if err != nil {
		return err
	}
	warnNoFile(g.log, sc.Limits().MaxConns)
	errLog := slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)
	api := srv.HTTPServer()
	api.ErrorLog = errLog
	rawLn, err := net.Listen("tcp", sc.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	ln := srv.Listener(rawLn)
	servers := []*http.Server{api}
	errc := make(chan error, 2)
	go func() {
		if sc.TLS() {
			errc <- api.ServeTLS(ln, sc.TLSCert, sc.TLSKey)
		} else {
			errc <- api.Serve(ln)
		}
	}()
	metricsAddr := ""
	if sc.MetricsListen != "" {
		mln, err := net.Listen("tcp", sc.MetricsListen)
		if err != nil {
			_ = api.Close()
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		metricsAddr = mln.Addr().String()
		ms := &http.Server{Handler: srv.MetricsHandler(), ReadHeaderTimeout: sc.HeaderTimeout, ReadTimeout: sc.HeaderTimeout,
			IdleTimeout: sc.IdleTimeout, ErrorLog: errLog}
		servers = append(servers, ms)
		go func() { errc <- ms.Serve(mln) }()
	}
	g.log.Info("cofferd serving", "listen", ln.Addr().String(), "tls", sc.TLS(), "metrics", metricsAddr, "store", data.Location(),
		"object_lock", g.objectLock, "store_write_rate", sc.StoreWriteRate, "store_read_rate", sc.StoreReadRate,
		"direct_downloads", sc.DirectDownloads)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	srv.Drain()
	g.log.Info("cofferd shutting down", "timeout", sc.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sc.ShutdownTimeout)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(sctx); err != nil {
			g.log.Warn("shutdown did not finish in time; closing connections", "err", err)
			_ = s.Close()
		}
	}
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", serveErr)
	}
	return nil
}

// noFileMargin is the descriptors cofferd needs beside the agent API's
// connections: the store's connections, the metrics listener, files.
const noFileMargin = 256

// warnNoFile warns when the open-file limit is too low for --max-conns:
// the process would run out of descriptors before the connection limits
// apply, and then refuse agents too.
func warnNoFile(log *slog.Logger, maxConns int) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	if need := uint64(maxConns) + noFileMargin; rl.Cur < need {
		log.Warn(fmt.Sprintf("the open-file limit (%d) is below --max-conns plus %d: raise it (LimitNOFILE= in the systemd unit, ulimit -n) to at least %d, or lower --max-conns",
			rl.Cur, noFileMargin, need), "nofile", rl.Cur, "max_conns", maxConns)
	}
}
