package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/store"
)

const exampleConfig = `
password_file: /etc/coffer/passphrase
schedule:
  cron: "30 1 * * *"
  timezone: Europe/Berlin
images:
  - path: /dev/vg0/db
    name: db
    tags: [nightly]
pools:
  - url: https://xen1.example
    password_file: /etc/coffer/xen-password
    fingerprint: "ab:cd"
    include: ["web-*", "db-?"]
    exclude: ["*-test"]
    include_tags: [backup]
    exclude_tags: [no-backup]
    parallel: 2
bandwidth:
  upload: 100Mbit
  windows:
    - {from: "08:00", to: "18:00", days: mon-fri, limit: 20Mbit}
    - {from: "22:00", to: "06:00", days: sat, limit: 5MiB/s, download: 1MiB}
retries:
  attempts: 4
  initial: 10m
  max: 2h
history: 10
`

func mustPlan(t *testing.T, yaml string) *Plan {
	t.Helper()
	p, err := ParseConfig([]byte(yaml))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	return p
}

func TestParseConfigExample(t *testing.T) {
	p := mustPlan(t, exampleConfig)
	if p.History != 10 || len(p.Images) != 1 || p.Images[0].Name != "db" || len(p.Pools) != 1 || p.Pools[0].Parallel != 2 {
		t.Fatalf("config read as %+v", p.Config)
	}
	if got := p.Retry(); got != (RetryPolicy{Attempts: 4, Initial: 10 * time.Minute, Max: 2 * time.Hour}) {
		t.Errorf("retry policy %+v", got)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	// Across the switch to summer time (29 March 2026): 01:30 local each night.
	runs := p.NextRuns(time.Date(2026, 3, 27, 12, 0, 0, 0, time.UTC), 5)
	if len(runs) != 5 {
		t.Fatalf("%d next runs, want 5", len(runs))
	}
	for i, r := range runs {
		l := r.In(berlin)
		day := time.Date(2026, 3, 28+i, 0, 0, 0, 0, berlin)
		if l.Hour() != 1 || l.Minute() != 30 || l.Day() != day.Day() || l.Month() != day.Month() {
			t.Errorf("run %d at %s, want 01:30 Berlin time on %s", i, l, day.Format("2 Jan"))
		}
	}
}

func TestParseConfigDefaults(t *testing.T) {
	p := mustPlan(t, "schedule: {cron: '@daily'}\nimages: [{path: /x}]\n")
	if p.History != defaultHistory || p.Retry().Attempts != 3 || p.Location() != time.UTC {
		t.Errorf("defaults: history %d, retry %+v, zone %v", p.History, p.Retry(), p.Location())
	}
	if l := p.Windows().Limits(time.Now()); l != (store.Limits{}) {
		t.Errorf("no bandwidth section gives limits %+v, want none", l)
	}
	if next := p.Next(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)); !next.Equal(time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("@daily after 10:00 is %s", next)
	}
}

func TestParseConfigErrors(t *testing.T) {
	base := "schedule: {cron: '@daily'}\nimages: [{path: /x}]\n"
	cases := []struct{ yaml, want string }{
		{base + "histroy: 3\n", `line 3: unknown key "histroy"`},
		{"schedule:\n  cron: '@daily'\n  timezon: UTC\nimages: [{path: /x}]\n", `line 3: unknown key "timezon"`},
		{base + "bandwidth:\n  windows:\n    - {from: '08:00', to: '09:00', limit: 1Mbit, dayz: mon}\n", `line 5: unknown key "dayz"`},
		{"images: [{path: /x}]\n", "schedule.cron is missing"},
		{"schedule: {cron: '61 * * * *'}\nimages: [{path: /x}]\n", `schedule.cron "61 * * * *"`},
		{"schedule: {cron: '0 0 30 2 *'}\nimages: [{path: /x}]\n", "never matches"},
		{"schedule: {cron: '@every 10s'}\nimages: [{path: /x}]\n", "more often than once a minute"},
		{"schedule: {cron: 'TZ=UTC 0 1 * * *'}\nimages: [{path: /x}]\n", "schedule.timezone"},
		{"schedule: {cron: '@daily', timezone: Mars/Olympus}\nimages: [{path: /x}]\n", "not a known time zone"},
		{"schedule: {cron: '@daily', timezone: ../../etc/passwd}\nimages: [{path: /x}]\n", "not a time zone name"},
		{"schedule: {cron: '@daily'}\n", "nothing to back up"},
		{"schedule: {cron: '@daily'}\npools: [{url: https://x}]\n", "password_file is missing"},
		{"schedule: {cron: '@daily'}\npools: [{url: https://x, password_file: /p, include: ['[a-']}]\n", "not a valid glob"},
		{base + "bandwidth: {upload: 20 furlongs}\n", "bandwidth.upload"},
		{base + "bandwidth:\n  windows: [{from: '8:00', to: '09:00', limit: 1Mbit}]\n", "bandwidth.windows[0]: from"},
		{base + "bandwidth:\n  windows: [{from: '08:00', to: '24:01', limit: 1Mbit}]\n", "bandwidth.windows[0]: to"},
		{base + "bandwidth:\n  windows: [{from: '08:00', to: '08:00', limit: 1Mbit}]\n", "needs a length"},
		{base + "bandwidth:\n  windows: [{from: '08:00', to: '09:00', days: mon-fry, limit: 1Mbit}]\n", "days"},
		{base + "bandwidth:\n  windows: [{from: '08:00', to: '09:00'}]\n", "limit is missing"},
		{base + "retries: {attempts: -1}\n", "retries.attempts"},
		{base + "retries: {initial: 1h, max: 1m}\n", "shorter than"},
		{base + "retries: {initial: soon}\n", "retries.initial"},
		{base + "history: 100000\n", "history"},
		{base + "---\nhistory: 3\n", "more than one YAML document"},
		{"schedule: [1, 2]\n", "cannot unmarshal"},
	}
	for _, c := range cases {
		_, err := ParseConfig([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseConfig(%q) = %v; want an error containing %q", c.yaml, err, c.want)
		}
	}
}

// A struct holding Config inline (as cmd/coffer's config does) is strict
// about its own keys and the agent's.
func TestDecodeStrictInline(t *testing.T) {
	var v struct {
		Repository string `yaml:"repository"`
		Config     `yaml:",inline"`
	}
	if err := DecodeStrict([]byte("repository: file:///r\nhistory: 4\n"), &v); err != nil || v.Repository != "file:///r" || v.History != 4 {
		t.Fatalf("DecodeStrict = %v, %+v", err, v)
	}
	if err := DecodeStrict([]byte("repository: x\nrepo: y\n"), &v); err == nil || !strings.Contains(err.Error(), `line 2: unknown key "repo"`) {
		t.Fatalf("unknown key: %v", err)
	}
	if err := DecodeStrict(make([]byte, MaxConfigSize+1), &v); err == nil {
		t.Fatal("an oversized file was read")
	}
	if err := DecodeStrict(nil, &v); err != nil {
		t.Fatalf("an empty file: %v", err)
	}
}

func TestParseRate(t *testing.T) {
	cases := map[string]int64{
		"": 0, "0": 0, "none": 0, "20Mbit": 2_500_000, "100Mbit/s": 12_500_000, "100mbps": 12_500_000,
		"5MiB": 5 << 20, "1.5GiB/s": 3 << 29, "800kbit": 100_000, "64KiB": 64 << 10, "10MB": 10_000_000, "8bit": 1,
	}
	for in, want := range cases {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"fast", "Mbit", "-5MiB", "1bit", "5 parsecs", "1e9GiB", "NaNMiB", ".MiB", "9999999TiB"} {
		if got, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %d; want an error", in, got)
		}
	}
}

func TestWindowsLimits(t *testing.T) {
	p := mustPlan(t, exampleConfig)
	berlin := p.Location()
	at := func(day, hour, minute int) time.Time { return time.Date(2026, 3, day, hour, minute, 0, 0, berlin) } // 2 March 2026 is a Monday
	cases := []struct {
		t    time.Time
		want store.Limits
	}{
		{at(2, 7, 59), store.Limits{Put: 12_500_000}},
		{at(2, 8, 0), store.Limits{Put: 2_500_000}},
		{at(6, 17, 59), store.Limits{Put: 2_500_000}},                    // Friday
		{at(6, 18, 0), store.Limits{Put: 12_500_000}},                    // Friday evening
		{at(7, 10, 0), store.Limits{Put: 12_500_000}},                    // Saturday day
		{at(7, 23, 0), store.Limits{Put: 5 << 20, Get: 1 << 20}},         // Saturday night
		{at(8, 5, 59), store.Limits{Put: 5 << 20, Get: 1 << 20}},         // … past midnight, into Sunday
		{at(8, 6, 0), store.Limits{Put: 12_500_000}},                     // its end
		{at(8, 23, 0), store.Limits{Put: 12_500_000}},                    // Sunday night: not a window
		{at(2, 7, 0).UTC().Add(time.Hour), store.Limits{Put: 2_500_000}}, // given in UTC, judged in Berlin
	}
	for _, c := range cases {
		if got := p.Windows().Limits(c.t); got != c.want {
			t.Errorf("limits at %s (%s) = %+v, want %+v", c.t, c.t.Weekday(), got, c.want)
		}
	}
}

func TestSelectVMs(t *testing.T) {
	vms := []VM{
		{Name: "web-1", UUID: "u1", Tags: []string{"backup"}},
		{Name: "web-test", UUID: "u2"},
		{Name: "db-a", UUID: "u3", Tags: []string{"no-backup"}},
		{Name: "mail", UUID: "u4", Tags: []string{"backup"}},
		{Name: "other", UUID: "U5"},
	}
	cases := []struct {
		rules VMRules
		want  string
	}{
		{VMRules{}, "u1 u2 u3 u4 U5"},
		{VMRules{Include: []string{"web-*"}}, "u1 u2"},
		{VMRules{Include: []string{"web-*"}, Exclude: []string{"*-test"}}, "u1"},
		{VMRules{IncludeTags: []string{"backup"}}, "u1 u4"},
		{VMRules{Include: []string{"db-?"}, IncludeTags: []string{"backup"}, ExcludeTags: []string{"no-backup"}}, "u1 u4"},
		{VMRules{Include: []string{"u5"}}, "U5"},
		{VMRules{Exclude: []string{"*"}}, ""},
	}
	for _, c := range cases {
		if got := strings.Join(c.rules.SelectVMs(vms), " "); got != c.want {
			t.Errorf("%+v chose %q, want %q", c.rules, got, c.want)
		}
	}
}
