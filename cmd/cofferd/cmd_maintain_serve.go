package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/pflag"

	"github.com/cofferhq/coffer/internal/maint"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/vaultapi"
	"github.com/cofferhq/coffer/vault/jobs"
	"github.com/cofferhq/coffer/vault/ledger"
	"github.com/cofferhq/coffer/vault/registry"
)

// serveMaintenance are cofferd serve's flags for retention and garbage
// collection on a schedule.
type serveMaintenance struct {
	every time.Duration
	grace time.Duration
}

func addServeMaintenanceFlags(fs *pflag.FlagSet) *serveMaintenance {
	m := &serveMaintenance{}
	fs.DurationVar(&m.every, "maintain-every", time.Hour, "apply retention (cofferd prune) and collect garbage (cofferd gc) this often, one replica at a time; 0: never")
	fs.DurationVar(&m.grace, "gc-grace", maint.DefaultGrace, "how long garbage collection keeps a marked pack before deleting it")
	return m
}

func (m *serveMaintenance) validate() error {
	switch {
	case m.every < 0:
		return usageError{Err: errors.New("--maintain-every must not be negative")}
	case m.every > 0 && m.every < time.Minute:
		return usageError{Err: errors.New("--maintain-every must be at least 1m")}
	case m.grace < time.Hour:
		return usageError{Err: errors.New("--gc-grace must be at least 1h: a backup in flight needs its packs kept for longer")}
	}
	return nil
}

// maintainLoop runs prune and gc every m.every while ctx lives, when this
// replica holds the maintenance lease.
func (g *globals) maintainLoop(ctx context.Context, data store.Store, reg *registry.Registry, led *ledger.Ledger, m *serveMaintenance) {
	holder, err := vaultapi.NewID()
	if err != nil {
		g.log.Error("scheduled maintenance is off", "err", err.Error())
		return
	}
	sw, _ := store.As[store.Swapper](data)
	for g.clock.Sleep(ctx, m.every) == nil {
		ok, err := jobs.TakeLease(ctx, sw, "maintenance", holder, g.clock.Now(), max(m.every, time.Hour))
		if err != nil || !ok {
			if err != nil {
				g.log.Warn("maintenance lease", "err", err.Error())
			}
			continue
		}
		g.maintainOnce(ctx, data, reg, led, m)
		if err := jobs.ReleaseLease(context.WithoutCancel(ctx), sw, "maintenance", holder); err != nil {
			g.log.Warn("releasing the maintenance lease", "err", err.Error())
		}
	}
}

// maintainOnce runs one round of prune then gc and logs what they did.
func (g *globals) maintainOnce(ctx context.Context, data store.Store, reg *registry.Registry, led *ledger.Ledger, m *serveMaintenance) {
	pr, err := g.runPrune(ctx, data, reg, led, "", false)
	if err != nil {
		g.log.Error("scheduled prune stopped; the next round runs on schedule", "err", err.Error())
	} else {
		for _, t := range pr.Tenants {
			g.log.Info("pruned", "tenant", t.Tenant, "removed", t.Removed, "future", len(t.Future))
		}
	}
	gr, err := g.runGC(ctx, data, reg, led, &gcFlags{grace: m.grace})
	if err != nil {
		g.log.Error("scheduled garbage collection stopped; the next round runs on schedule", "err", err.Error())
		return
	}
	for _, t := range gr.Tenants {
		g.log.Info("garbage collected", "tenant", t.Tenant, "marked", len(t.Plan.NewMarks), "condemned", len(t.Plan.Condemned),
			"deleted", len(t.Deleted), "bytes", t.DeletedBytes)
	}
	for _, s := range gr.Refused {
		g.log.Warn("garbage collection refused", "tenant", s.Tenant, "reason", s.Reason)
	}
}
