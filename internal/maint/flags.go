package maint

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
)

// PolicyFlags are the --keep-* flags of a command that takes a policy.
type PolicyFlags struct {
	last, hourly, daily, weekly, monthly, yearly int
	within                                       withinValue
}

// Bind adds --keep-last, --keep-within, --keep-hourly, --keep-daily,
// --keep-weekly, --keep-monthly and --keep-yearly to fs.
func (f *PolicyFlags) Bind(fs *pflag.FlagSet) {
	fs.IntVar(&f.last, "keep-last", 0, "keep the N newest snapshots of each VM")
	fs.Var(&f.within, "keep-within", "keep every snapshot at most this much older than the VM's newest (30d, 2w, 36h)")
	fs.IntVar(&f.hourly, "keep-hourly", 0, "keep the newest snapshot of each of the last N hours that have one")
	fs.IntVar(&f.daily, "keep-daily", 0, "keep the newest snapshot of each of the last N days that have one")
	fs.IntVar(&f.weekly, "keep-weekly", 0, "keep the newest snapshot of each of the last N ISO weeks that have one")
	fs.IntVar(&f.monthly, "keep-monthly", 0, "keep the newest snapshot of each of the last N months that have one")
	fs.IntVar(&f.yearly, "keep-yearly", 0, "keep the newest snapshot of each of the last N years that have one")
}

// Policy is the policy the flags give, validated.
func (f *PolicyFlags) Policy() (Policy, error) {
	p := Policy{Last: f.last, Within: time.Duration(f.within), Hourly: f.hourly, Daily: f.daily,
		Weekly: f.weekly, Monthly: f.monthly, Yearly: f.yearly}
	return p, p.Validate()
}

// ParsePolicy reads a policy from command-line arguments such as
// "--keep-last 7 --keep-daily 14 --keep-weekly 8", validated. Anything but
// --keep-* flags is refused.
func ParsePolicy(args []string) (Policy, error) {
	fs := pflag.NewFlagSet("retention", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f PolicyFlags
	f.Bind(fs)
	if err := fs.Parse(args); err != nil {
		return Policy{}, fmt.Errorf("retention policy: %w", err)
	}
	if fs.NArg() > 0 {
		return Policy{}, fmt.Errorf("retention policy: unexpected argument %q: give only --keep-* flags", fs.Arg(0))
	}
	return f.Policy()
}

// withinValue is --keep-within as a pflag.Value.
type withinValue time.Duration

func (w *withinValue) String() string {
	if *w == 0 {
		return ""
	}
	return FormatDuration(time.Duration(*w))
}

func (w *withinValue) Set(s string) error {
	d, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*w = withinValue(d)
	return nil
}

func (w *withinValue) Type() string { return "duration" }
