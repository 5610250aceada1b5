package maint

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the golden years must not depend on the machine's zone files

	"github.com/cofferhq/coffer/internal/clock/clocktest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from what Apply keeps")

// nightlyEvents is a simulated year and a bit of one VM's snapshots in loc,
// from mid-December 2027 to early January 2029: nightly at hh:30 local, with
// the irregular nights a real agent has. It crosses two new years (2028-01-01
// is in ISO week 2027-W52), the leap day 2028-02-29, and both daylight saving
// changes of 2028; in the night the clocks go back, hh:30 happens twice and
// both get a snapshot.
func nightlyEvents(loc *time.Location, hh int) []time.Time {
	var out []time.Time
	start := time.Date(2027, 12, 15, 0, 0, 0, 0, loc)
	for day := start; day.Year() < 2029 || day.YearDay() <= 5; day = day.AddDate(0, 0, 1) {
		if missedNight(day) {
			continue
		}
		t := time.Date(day.Year(), day.Month(), day.Day(), hh, 30, 0, 0, loc)
		out = append(out, t)
		if again := t.Add(time.Hour); again.Format("15:04") == t.Format("15:04") {
			out = append(out, again) // the repeated hour when the clocks go back
		}
		if day.YearDay()%11 == 0 { // a manual run late the same evening
			out = append(out, time.Date(day.Year(), day.Month(), day.Day(), 23, 55, 0, 0, loc))
		}
		if day.YearDay()%29 == 3 { // a rerun minutes after the nightly one
			out = append(out, t.Add(7*time.Minute))
		}
	}
	return out
}

// missedNight: every 13th night, and the agent's host was off 2028-08-07..13.
func missedNight(day time.Time) bool {
	if day.Year() == 2028 && day.Month() == time.August && day.Day() >= 7 && day.Day() <= 13 {
		return true
	}
	return day.YearDay()%13 == 0
}

// simulateNights drives an injected clock through events: at each one the
// agent takes a snapshot at the clock's time, and after it the vault prunes
// by p, as `cofferd serve` does on its schedule. It returns what is left.
func simulateNights(t *testing.T, p Policy, loc *time.Location, events []time.Time) []Item {
	t.Helper()
	ctx := context.Background()
	clk := clocktest.New(events[0].Add(-time.Hour))
	var items []Item
	for i, ev := range events {
		if err := clk.Sleep(ctx, ev.Sub(clk.Now())); err != nil {
			t.Fatal(err)
		}
		items = append(items, Item{ID: fmt.Sprintf("s%03d", i), Group: "web01", Time: clk.Now()})
		items = keptItems(Apply(p, items, loc))
	}
	return items
}

func keptItems(ds []Decision) []Item {
	var out []Item
	for _, d := range ds {
		if d.Keep {
			out = append(out, d.Item)
		}
	}
	return out
}

func TestGoldenYears(t *testing.T) {
	policies := map[string]string{
		"gfs":    "--keep-last 7 --keep-daily 14 --keep-weekly 8 --keep-monthly 12 --keep-yearly 3",
		"within": "--keep-within 10d --keep-monthly 6",
		"hourly": "--keep-hourly 30 --keep-weekly 3",
	}
	zones := map[string]int{"Europe/Amsterdam": 2, "America/New_York": 1}
	for pname, args := range policies {
		for zone, hh := range zones {
			name := pname + "-" + strings.ReplaceAll(strings.ToLower(zone), "/", "-")
			t.Run(name, func(t *testing.T) {
				p, err := ParsePolicy(strings.Fields(args))
				if err != nil {
					t.Fatal(err)
				}
				loc, err := time.LoadLocation(zone)
				if err != nil {
					t.Fatal(err)
				}
				events := nightlyEvents(loc, hh)
				nightly := simulateNights(t, p, loc, events)
				var all []Item
				for i, ev := range events {
					all = append(all, Item{ID: fmt.Sprintf("s%03d", i), Group: "web01", Time: ev})
				}
				once := Apply(p, all, loc)
				if got, want := keptItems(once), nightly; !slices.Equal(got, want) {
					t.Errorf("pruning once keeps %d snapshots, pruning every night %d: they must be the same", len(got), len(want))
				}
				checkGolden(t, name, renderKept(p, loc, once))
			})
		}
	}
}

func renderKept(p Policy, loc *time.Location, ds []Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# policy: %s\n# zone: %s\n", p, loc)
	n := 0
	for _, d := range ds {
		if d.Keep {
			n++
			fmt.Fprintf(&b, "%s %s  %s\n", d.ID, d.Time.In(loc).Format("2006-01-02 15:04 -0700 Mon"), strings.Join(d.Reasons, ", "))
		}
	}
	fmt.Fprintf(&b, "# kept %d of %d\n", n, len(ds))
	return b.String()
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/maint -run TestGoldenYears -update to write it, then review it)", err)
	}
	if got != string(want) {
		t.Errorf("kept set differs from %s (review, then -update):\n--- got\n%s", path, got)
	}
}

// TestGoldenDSTHours: snapshots every 20 minutes through the nights the
// clocks change, under an hourly policy. The hour repeated in autumn is two
// buckets; the hour skipped in spring is none.
func TestGoldenDSTHours(t *testing.T) {
	nights := map[string]time.Time{
		"Europe/Amsterdam-autumn": time.Date(2028, 10, 28, 23, 0, 0, 0, time.UTC),
		"Europe/Amsterdam-spring": time.Date(2028, 3, 25, 23, 0, 0, 0, time.UTC),
		"America/New_York-autumn": time.Date(2028, 11, 5, 3, 0, 0, 0, time.UTC),
		"America/New_York-spring": time.Date(2028, 3, 12, 4, 0, 0, 0, time.UTC),
	}
	p := Policy{Last: 2, Hourly: 8}
	for name, start := range nights {
		zone, _, _ := strings.Cut(name, "-")
		loc := mustLoc(t, zone)
		var items []Item
		for i := range 24 { // eight hours of absolute time
			items = append(items, Item{ID: fmt.Sprintf("h%02d", i), Group: "db01", Time: start.Add(time.Duration(i) * 20 * time.Minute)})
		}
		slices.Reverse(items) // Apply must not care about the input order
		checkGolden(t, "dst-hours-"+strings.ReplaceAll(strings.ToLower(name), "/", "-"), renderKept(p, loc, Apply(p, items, loc)))
	}
}
