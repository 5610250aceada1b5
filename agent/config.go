package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
)

// Config is the agent's part of the config file (coffer.yaml). The
// command's own keys (repository, credential, …) sit beside these at the
// top level; see DecodeStrict.
type Config struct {
	// PasswordFile holds the repository passphrase (never the passphrase
	// itself; COFFER_PASSWORD and --password-file still win).
	PasswordFile string          `yaml:"password_file,omitempty"`
	Schedule     ScheduleConfig  `yaml:"schedule,omitempty"`
	Images       []ImageSource   `yaml:"images,omitempty"`
	Pools        []PoolSource    `yaml:"pools,omitempty"`
	Bandwidth    BandwidthConfig `yaml:"bandwidth,omitempty"`
	Retries      RetryConfig     `yaml:"retries,omitempty"`
	// History is how many run records this machine keeps (default 30).
	History int `yaml:"history,omitempty"`
}

// ScheduleConfig is when runs start.
type ScheduleConfig struct {
	// Cron is a standard 5-field cron line or a descriptor (@daily,
	// @hourly, @every 6h, …).
	Cron string `yaml:"cron,omitempty"`
	// TimeZone is an IANA zone (Europe/Berlin); default UTC.
	TimeZone string `yaml:"timezone,omitempty"`
}

// ImageSource is a disk image file or block device to back up.
type ImageSource struct {
	Path string   `yaml:"path"`
	Name string   `yaml:"name,omitempty"` // default: the file's name
	Tags []string `yaml:"tags,omitempty"`
}

// PoolSource is a XenServer / XCP-ng pool: the settings of coffer backup
// --xen, with the VMs chosen by rules (SelectVMs).
type PoolSource struct {
	URL          string `yaml:"url"`
	User         string `yaml:"user,omitempty"`
	PasswordFile string `yaml:"password_file"`
	CA           string `yaml:"ca,omitempty"`
	Fingerprint  string `yaml:"fingerprint,omitempty"`
	Parallel     int    `yaml:"parallel,omitempty"`
	VMRules      `yaml:",inline"`
	Tags         []string `yaml:"tags,omitempty"` // added to every snapshot
}

// VMRules choose a pool's VMs: those matching an include rule (every VM
// when there is none), less those matching an exclude rule. Names are
// globs (path.Match: * ? [a-z]) matched against the VM's name, or a UUID;
// tags match the VM's XenServer tags exactly.
type VMRules struct {
	Include     []string `yaml:"include,omitempty"`
	Exclude     []string `yaml:"exclude,omitempty"`
	IncludeTags []string `yaml:"include_tags,omitempty"`
	ExcludeTags []string `yaml:"exclude_tags,omitempty"`
}

// BandwidthConfig limits the traffic to the repository: Upload (and
// Download) by default, Windows at the times they name. Rates are like
// 20Mbit, 100Mbit/s, 5MiB, 1.5GiB/s; 0 or "" is no limit.
type BandwidthConfig struct {
	Upload   string         `yaml:"upload,omitempty"`
	Download string         `yaml:"download,omitempty"`
	Windows  []WindowConfig `yaml:"windows,omitempty"`
}

// WindowConfig is a time of day with its own limits: From until To (To
// before From runs past midnight; "24:00" is the day's end), on Days
// (mon-fri, sat,sun, …; every day when empty).
type WindowConfig struct {
	From     string `yaml:"from"`
	To       string `yaml:"to"`
	Days     string `yaml:"days,omitempty"`
	Limit    string `yaml:"limit"`
	Download string `yaml:"download,omitempty"`
}

// RetryConfig is how a failed run is tried again.
type RetryConfig struct {
	Attempts int    `yaml:"attempts,omitempty"` // tries in all (default 3)
	Initial  string `yaml:"initial,omitempty"`  // first wait (default 5m)
	Max      string `yaml:"max,omitempty"`      // longest wait (default 1h)
}

// Limits on the config.
const (
	MaxConfigSize  = 1 << 20
	maxHistory     = 1000
	maxAttempts    = 100
	maxSources     = 1000
	defaultHistory = 30
)

// DecodeStrict decodes config file b into v (a struct holding Config
// inline, or a Config): unknown keys are errors naming the key and its
// line, as are a second document and a file over MaxConfigSize.
func DecodeStrict(b []byte, v any) error {
	if len(b) > MaxConfigSize {
		return fmt.Errorf("the config file is %d bytes, over the %d allowed", len(b), MaxConfigSize)
	}
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return explainYAML(err)
	}
	var extra yaml.Node
	if err := d.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("the config file holds more than one YAML document (a second ---): keep one")
	}
	return nil
}

var unknownField = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)

// explainYAML rewrites yaml.v3's errors for people: "line 4: unknown key
// \"x\"".
func explainYAML(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("not valid YAML: %v", err)
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		if m := unknownField.FindStringSubmatch(e); m != nil {
			e = fmt.Sprintf("line %s: unknown key %q (check its spelling and indentation against README.md, \"coffer agent\")", m[1], m[2])
		}
		msgs = append(msgs, e)
	}
	return errors.New(strings.Join(msgs, "; "))
}

// ParseConfig decodes and checks a file holding only the agent's keys.
func ParseConfig(b []byte) (*Plan, error) {
	var c Config
	if err := DecodeStrict(b, &c); err != nil {
		return nil, err
	}
	return c.Plan()
}

// Plan is a checked config, ready to run.
type Plan struct {
	Config
	schedule cron.Schedule
	loc      *time.Location
	windows  *Windows
	retry    RetryPolicy
}

// Plan checks c and compiles it.
func (c Config) Plan() (*Plan, error) {
	p := &Plan{Config: c}
	var err error
	if p.schedule, p.loc, err = parseSchedule(c.Schedule); err != nil {
		return nil, err
	}
	if p.windows, err = parseBandwidth(c.Bandwidth); err != nil {
		return nil, err
	}
	p.windows.loc = p.loc
	if p.retry, err = parseRetries(c.Retries); err != nil {
		return nil, err
	}
	if err := c.checkSources(); err != nil {
		return nil, err
	}
	switch {
	case c.History < 0 || c.History > maxHistory:
		return nil, fmt.Errorf("history: %d records; keep between 1 and %d", c.History, maxHistory)
	case c.History == 0:
		p.History = defaultHistory
	}
	return p, nil
}

// Next is the first run strictly after t (zero if the schedule never
// runs again).
func (p *Plan) Next(t time.Time) time.Time { return p.schedule.Next(t.In(p.loc)) }

// NextRuns are the n runs after t.
func (p *Plan) NextRuns(t time.Time, n int) []time.Time {
	var out []time.Time
	for range n {
		t = p.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

// Windows are the plan's bandwidth windows.
func (p *Plan) Windows() *Windows { return p.windows }

// Retry is the plan's retry policy.
func (p *Plan) Retry() RetryPolicy { return p.retry }

// Location is the schedule's time zone.
func (p *Plan) Location() *time.Location { return p.loc }

func parseSchedule(s ScheduleConfig) (cron.Schedule, *time.Location, error) {
	loc := time.UTC
	if s.TimeZone != "" {
		if strings.ContainsAny(s.TimeZone, "\x00") || strings.Contains(s.TimeZone, "..") || strings.HasPrefix(s.TimeZone, "/") {
			return nil, nil, fmt.Errorf("schedule.timezone %q is not a time zone name (like Europe/Berlin or UTC)", clip(s.TimeZone))
		}
		var err error
		if loc, err = time.LoadLocation(s.TimeZone); err != nil {
			return nil, nil, fmt.Errorf("schedule.timezone %q is not a known time zone (like Europe/Berlin or UTC): %v", clip(s.TimeZone), err)
		}
	}
	line := strings.TrimSpace(s.Cron)
	if line == "" {
		return nil, nil, errors.New(`schedule.cron is missing: give a cron line like "30 1 * * *" (01:30 every night) or @daily`)
	}
	if strings.Contains(line, "TZ=") {
		return nil, nil, errors.New("schedule.cron: give the time zone in schedule.timezone, not as TZ= in the cron line")
	}
	sched, err := cron.ParseStandard(line)
	if err != nil {
		return nil, nil, fmt.Errorf("schedule.cron %q: %v (want 5 fields: minute hour day-of-month month day-of-week, or @daily, @hourly, @every 6h)", clip(line), err)
	}
	if cd, ok := sched.(cron.ConstantDelaySchedule); ok && cd.Delay < time.Minute {
		return nil, nil, fmt.Errorf("schedule.cron %q runs more often than once a minute; backups that close together would overlap", clip(line))
	}
	if sched.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, loc)).IsZero() {
		return nil, nil, fmt.Errorf("schedule.cron %q never matches a date (like the 30th of February)", clip(line))
	}
	return sched, loc, nil
}

func parseRetries(r RetryConfig) (RetryPolicy, error) {
	p := RetryPolicy{Attempts: 3, Initial: 5 * time.Minute, Max: time.Hour}
	if r.Attempts < 0 || r.Attempts > maxAttempts {
		return p, fmt.Errorf("retries.attempts: %d; give between 1 and %d tries in all", r.Attempts, maxAttempts)
	}
	if r.Attempts > 0 {
		p.Attempts = r.Attempts
	}
	var err error
	if p.Initial, err = parseDuration("retries.initial", r.Initial, p.Initial); err != nil {
		return p, err
	}
	if p.Max, err = parseDuration("retries.max", r.Max, p.Max); err != nil {
		return p, err
	}
	if p.Max < p.Initial {
		return p, fmt.Errorf("retries.max (%s) is shorter than retries.initial (%s)", p.Max, p.Initial)
	}
	return p, nil
}

func parseDuration(key, s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 || d > 7*24*time.Hour {
		return 0, fmt.Errorf("%s %q is not a duration between 1s and 168h (like 5m or 1h)", key, clip(s))
	}
	return d, nil
}

func (c Config) checkSources() error {
	if len(c.Images)+len(c.Pools) == 0 {
		return errors.New("nothing to back up: add images (- path: /dev/vg0/disk) or pools (- url: https://xen-host) to the config")
	}
	if len(c.Images)+len(c.Pools) > maxSources {
		return fmt.Errorf("%d sources; at most %d", len(c.Images)+len(c.Pools), maxSources)
	}
	for i, im := range c.Images {
		if im.Path == "" || strings.ContainsRune(im.Path, 0) {
			return fmt.Errorf("images[%d]: path is missing or not a file path", i)
		}
	}
	for i, p := range c.Pools {
		if err := p.check(); err != nil {
			return fmt.Errorf("pools[%d] (%s): %w", i, clip(p.URL), err)
		}
	}
	return nil
}

func (p PoolSource) check() error {
	switch {
	case p.URL == "":
		return errors.New("url is missing (https://pool-master)")
	case p.PasswordFile == "":
		return errors.New("password_file is missing: the file holding the XenServer password")
	case p.Parallel < 0 || p.Parallel > 64:
		return fmt.Errorf("parallel %d: give between 1 and 64 VMs at once", p.Parallel)
	}
	for _, g := range append(append([]string{}, p.Include...), p.Exclude...) {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("VM name pattern %q is not a valid glob: %v", clip(g), err)
		}
	}
	return nil
}

// clip shortens outside input before it goes into a message.
func clip(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
