package agent

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

// Windows are bandwidth limits by time of day: the first window that
// holds a time gives its limits, else the default.
type Windows struct {
	Default store.Limits
	List    []Window
	loc     *time.Location
}

// Window is one time of day with its limits. From and To are minutes
// after midnight; To <= From runs past midnight (the part after midnight
// belongs to the day it started on).
type Window struct {
	From, To int
	Days     [7]bool // by time.Weekday
	Limits   store.Limits
}

// Limits are the limits in force at t (in the schedule's time zone).
func (w *Windows) Limits(t time.Time) store.Limits {
	if w.loc != nil {
		t = t.In(w.loc)
	}
	minute := t.Hour()*60 + t.Minute()
	for _, win := range w.List {
		if win.holds(t.Weekday(), minute) {
			return win.Limits
		}
	}
	return w.Default
}

func (win Window) holds(day time.Weekday, minute int) bool {
	if win.From < win.To {
		return win.Days[day] && minute >= win.From && minute < win.To
	}
	yesterday := (day + 6) % 7
	return win.Days[day] && minute >= win.From || win.Days[yesterday] && minute < win.To
}

const maxWindows = 100

func parseBandwidth(c BandwidthConfig) (*Windows, error) {
	w := &Windows{}
	var err error
	if w.Default.Put, err = ParseRate(c.Upload); err != nil {
		return nil, fmt.Errorf("bandwidth.upload: %w", err)
	}
	if w.Default.Get, err = ParseRate(c.Download); err != nil {
		return nil, fmt.Errorf("bandwidth.download: %w", err)
	}
	if len(c.Windows) > maxWindows {
		return nil, fmt.Errorf("bandwidth.windows: %d windows; at most %d", len(c.Windows), maxWindows)
	}
	for i, wc := range c.Windows {
		win, err := parseWindow(wc, w.Default)
		if err != nil {
			return nil, fmt.Errorf("bandwidth.windows[%d]: %w", i, err)
		}
		w.List = append(w.List, win)
	}
	return w, nil
}

func parseWindow(c WindowConfig, def store.Limits) (Window, error) {
	var win Window
	var err error
	if win.From, err = parseClock(c.From, false); err != nil {
		return win, fmt.Errorf("from: %w", err)
	}
	if win.To, err = parseClock(c.To, true); err != nil {
		return win, fmt.Errorf("to: %w", err)
	}
	if win.From == win.To {
		return win, fmt.Errorf("from and to are both %s: a window needs a length (00:00 to 24:00 is the whole day)", c.From)
	}
	if win.Days, err = parseDays(c.Days); err != nil {
		return win, fmt.Errorf("days: %w", err)
	}
	if c.Limit == "" {
		return win, errors.New("limit is missing (like 20Mbit or 5MiB; 0 for none)")
	}
	if win.Limits.Put, err = ParseRate(c.Limit); err != nil {
		return win, fmt.Errorf("limit: %w", err)
	}
	win.Limits.Get = def.Get
	if c.Download != "" {
		if win.Limits.Get, err = ParseRate(c.Download); err != nil {
			return win, fmt.Errorf("download: %w", err)
		}
	}
	return win, nil
}

// parseClock reads "HH:MM" as minutes after midnight; "24:00" only as an
// end.
func parseClock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || len(h) != 2 || len(m) != 2 || err1 != nil || err2 != nil || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && (mm != 0 || !end) {
		return 0, fmt.Errorf("%q is not a time of day HH:MM (00:00 to 23:59, or 24:00 as an end)", clip(s))
	}
	return hh*60 + mm, nil
}

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func dayIndex(s string) (int, bool) {
	for i, d := range dayNames {
		if s == d {
			return i, true
		}
	}
	return 0, false
}

// parseDays reads "mon-fri", "sat,sun", "mon,wed-fri"; empty is every
// day. A range may wrap (fri-mon).
func parseDays(s string) ([7]bool, error) {
	var days [7]bool
	if s == "" || s == "daily" {
		return [7]bool{true, true, true, true, true, true, true}, nil
	}
	for part := range strings.SplitSeq(strings.ToLower(s), ",") {
		a, b, isRange := strings.Cut(strings.TrimSpace(part), "-")
		from, ok1 := dayIndex(a)
		to, ok2 := from, true
		if isRange {
			to, ok2 = dayIndex(b)
		}
		if !ok1 || !ok2 {
			return days, fmt.Errorf("%q is not a list of days (like mon-fri or sat,sun)", clip(s))
		}
		for d := from; ; d = (d + 1) % 7 {
			days[d] = true
			if d == to {
				break
			}
		}
	}
	return days, nil
}

// The units of a rate: bits are decimal (network speeds), bytes binary.
var rateUnits = map[string]float64{
	"bit": 1.0 / 8, "kbit": 1e3 / 8, "mbit": 1e6 / 8, "gbit": 1e9 / 8,
	"b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
	"kb": 1e3, "mb": 1e6, "gb": 1e9,
}

// maxRate is far above any link: a limit there is no limit.
const maxRate = 1 << 40

// ParseRate reads a rate like 20Mbit, 100Mbit/s, 5MiB, 1.5GiB/s or 800kbit
// as bytes per second; "", "0" and "none" are no limit (0).
func ParseRate(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if t == "" || t == "0" || t == "none" || t == "unlimited" {
		return 0, nil
	}
	t = strings.TrimSuffix(t, "/s")
	if strings.HasSuffix(t, "bps") { // 100Mbps: megabits
		t = strings.TrimSuffix(t, "ps") + "it"
	}
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i <= 0 {
		return 0, fmt.Errorf("%q is not a rate: give a number and a unit, like 20Mbit or 5MiB (per second)", clip(s))
	}
	v, err := strconv.ParseFloat(t[:i], 64)
	unit, ok := rateUnits[strings.TrimSpace(t[i:])]
	if err != nil || !ok {
		return 0, fmt.Errorf("%q is not a rate: units are bit, kbit, Mbit, Gbit (per second, decimal) or B, KiB, MiB, GiB, kB, MB, GB", clip(s))
	}
	r := v * unit
	if r < 1 || r > maxRate {
		return 0, fmt.Errorf("%q is out of range: give at least 8bit (1 B/s) and at most 1TiB/s, or 0 for no limit", clip(s))
	}
	return int64(r), nil
}
