package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/pflag"

	"github.com/cofferhq/coffer/internal/drill"
)

// serveDrills are cofferd serve's drill flags.
type serveDrills struct {
	every     time.Duration
	escrowKey string
}

func addServeDrillFlags(fs *pflag.FlagSet) *serveDrills {
	d := &serveDrills{}
	fs.DurationVar(&d.every, "drill-every", 0, "run restore drills (cofferd drill: verify-only, the newest snapshot of each VM) this often; 0: never")
	fs.StringVar(&d.escrowKey, "escrow-key", "", "with --drill-every: the escrow identity file the drills open tenants' repositories with")
	return d
}

// validate checks the flags, and the escrow identity file now rather than
// at the first drill.
func (d *serveDrills) validate() error {
	switch {
	case d.every < 0:
		return usageError{Err: errors.New("--drill-every must not be negative")}
	case d.every == 0 && d.escrowKey != "":
		return usageError{Err: errors.New("--escrow-key is for scheduled drills: give --drill-every too")}
	case d.every == 0:
		return nil
	case d.every < time.Minute:
		return usageError{Err: errors.New("--drill-every must be at least 1m: every drill reads each VM's newest snapshot in full")}
	case d.escrowKey == "":
		return usageError{Err: errors.New("--drill-every needs --escrow-key FILE (the identity cofferd escrow init wrote)")}
	}
	_, err := readEscrowIdentity(d.escrowKey)
	return err
}

// drillLoop runs the drills every d.every until ctx ends, one round at a
// time, logging each drill's result; done, if set, sees each round.
func (g *globals) drillLoop(ctx context.Context, d *serveDrills, done func(*drillOut, error)) {
	f := &drillFlags{escrowKey: d.escrowKey, pick: drill.PickNewest, vmRTO: map[string]time.Duration{}}
	for g.clock.Sleep(ctx, d.every) == nil {
		out, err := g.runDrills(ctx, f)
		if ctx.Err() != nil {
			return
		}
		g.logDrills(out, err)
		if done != nil {
			done(out, err)
		}
	}
}

// logDrills logs one round of scheduled drills.
func (g *globals) logDrills(out *drillOut, err error) {
	if err != nil {
		g.log.Error("scheduled drills stopped; the next round runs on schedule", "err", err.Error())
		return
	}
	for _, e := range out.Drills {
		if e.Passed() {
			g.log.Info("drill passed", "tenant", e.Tenant, "vm", e.VM, "snapshot", e.SnapshotID, "seconds", e.DurationSeconds, "rto", e.RTO)
		} else {
			g.log.Warn("drill failed", "tenant", e.Tenant, "vm", e.VM, "snapshot", e.SnapshotID, "error", e.Error, "rto", e.RTO)
		}
	}
	for _, s := range out.Skipped {
		g.log.Info("drill skipped", "tenant", s.Tenant, "vm", s.VM, "reason", s.Reason)
	}
}
