package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/seed"
)

func newSeedCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "seed (export | status | confirm | cancel)",
		Short: "Ship the first full backup on a disk: export a seed, follow its import, confirm it",
		Long: `A seed is a full backup written to a portable disk with Reed-Solomon parity
and a manifest signed with the repository's signing key, shipped to the
vault instead of uploaded. Nightly backups go on while it travels and
upload only what it does not hold; their snapshots wait on it until the
vault imports it. If the disk is lost, coffer seed cancel declares it so:
the next run uploads what it held. See README.md, "Seeding a tenant from a
shipped disk".`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newSeedExportCmd(g), newSeedStatusCmd(g), newSeedConfirmCmd(g), newSeedCancelCmd(g))
	return cmd
}

// parseParity reads --parity: a share of the seed's files as "5%", "5"
// (percent) or "0.05".
func parseParity(s string) (float64, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(t, "%")), 64)
	if err != nil || math.IsNaN(v) {
		return 0, fmt.Errorf("--parity %q: give a share of the seed's files such as 5%% or 10%%", s)
	}
	if pct || v >= 1 {
		v /= 100
	}
	if !(v > 0 && v <= seed.MaxParityShare) {
		return 0, fmt.Errorf("--parity %q: the share must be above 0%% and at most %g%%", s, 100*seed.MaxParityShare)
	}
	return v, nil
}

// wanTime is how long bytes take at bytesPerSecond.
func wanTime(bytes, bytesPerSecond int64) time.Duration {
	if bytesPerSecond <= 0 {
		return 0
	}
	secs := float64(bytes) / float64(bytesPerSecond)
	if secs > float64(math.MaxInt64/int64(time.Second)) {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(secs * float64(time.Second))
}

// durationText says a long duration for people: "23 d 4 h", "5 h 12 min",
// "3 min 20 s", "12 s".
func durationText(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s >= 86400:
		h := int64(d.Round(time.Hour) / time.Hour)
		return fmt.Sprintf("%d d %d h", h/24, h%24)
	case s >= 3600:
		m := int64(d.Round(time.Minute) / time.Minute)
		return fmt.Sprintf("%d h %d min", m/60, m%60)
	}
	mins, secs := s/60, s%60
	switch {
	case mins > 0:
		return fmt.Sprintf("%d min %d s", mins, secs)
	}
	return fmt.Sprintf("%d s", secs)
}

// bitRateText says bytes per second in bits, decimal: "20 Mbit/s".
func bitRateText(bytesPerSecond int64) string {
	bits := float64(bytesPerSecond) * 8
	for _, u := range []struct {
		div  float64
		name string
	}{{1e12, "Tbit/s"}, {1e9, "Gbit/s"}, {1e6, "Mbit/s"}, {1e3, "kbit/s"}} {
		if bits >= u.div {
			return strconv.FormatFloat(math.Round(bits/u.div*100)/100, 'f', -1, 64) + " " + u.name
		}
	}
	return strconv.FormatFloat(bits, 'f', 0, 64) + " bit/s"
}
