package maint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxKeep is the largest count a rule may keep: more than a century of
// hourly snapshots. Larger numbers are typing mistakes.
const MaxKeep = 1_000_000

// MaxWithin is the longest Within a policy may have.
const MaxWithin = 100 * 365 * 24 * time.Hour

// ErrKeepsNothing is returned by Validate for a policy with no rule: applied,
// it would delete every snapshot.
var ErrKeepsNothing = errors.New("the retention policy keeps nothing: set at least one of --keep-last, --keep-within, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly")

// Policy is a GFS retention policy for one group of snapshots (one VM). A zero
// field is a rule that keeps nothing; see the package doc for how each rule
// counts.
type Policy struct {
	Last    int
	Within  time.Duration
	Hourly  int
	Daily   int
	Weekly  int
	Monthly int
	Yearly  int
}

// Empty reports whether p has no rule at all.
func (p Policy) Empty() bool { return p == Policy{} }

// Validate checks p: no negative or absurd count, and at least one rule.
func (p Policy) Validate() error {
	for _, r := range p.counts() {
		if r.n < 0 {
			return fmt.Errorf("retention --keep-%s %d is negative: give a count of 0 (keep none by this rule) or more", r.name, r.n)
		}
		if r.n > MaxKeep {
			return fmt.Errorf("retention --keep-%s %d is more than %d: give a smaller count", r.name, r.n, MaxKeep)
		}
	}
	if p.Within < 0 || p.Within > MaxWithin {
		return fmt.Errorf("retention --keep-within %s is out of range: give a duration from 0 (no such rule) to %s, for example 30d", FormatDuration(p.Within), FormatDuration(MaxWithin))
	}
	if p.Empty() {
		return ErrKeepsNothing
	}
	return nil
}

type countRule struct {
	name string
	n    int
}

func (p Policy) counts() []countRule {
	return []countRule{{"last", p.Last}, {"hourly", p.Hourly}, {"daily", p.Daily},
		{"weekly", p.Weekly}, {"monthly", p.Monthly}, {"yearly", p.Yearly}}
}

// String is the policy as the flags that give it, the zero rules left out,
// for example "--keep-last 7 --keep-daily 14".
func (p Policy) String() string {
	var parts []string
	if p.Last > 0 {
		parts = append(parts, "--keep-last "+strconv.Itoa(p.Last))
	}
	if p.Within > 0 {
		parts = append(parts, "--keep-within "+FormatDuration(p.Within))
	}
	for _, r := range p.counts()[1:] {
		if r.n > 0 {
			parts = append(parts, "--keep-"+r.name+" "+strconv.Itoa(r.n))
		}
	}
	if len(parts) == 0 {
		return "(keeps nothing)"
	}
	return strings.Join(parts, " ")
}

// policyJSON is Policy on the wire and in the registry: counts by name, Within
// as a duration string ("30d", "36h"), zero rules left out.
type policyJSON struct {
	Last    int    `json:"last,omitempty"`
	Within  string `json:"within,omitempty"`
	Hourly  int    `json:"hourly,omitempty"`
	Daily   int    `json:"daily,omitempty"`
	Weekly  int    `json:"weekly,omitempty"`
	Monthly int    `json:"monthly,omitempty"`
	Yearly  int    `json:"yearly,omitempty"`
}

// MarshalJSON encodes p as {"last":7,"within":"30d","daily":14,...}.
func (p Policy) MarshalJSON() ([]byte, error) {
	j := policyJSON{Last: p.Last, Hourly: p.Hourly, Daily: p.Daily, Weekly: p.Weekly, Monthly: p.Monthly, Yearly: p.Yearly}
	if p.Within != 0 {
		j.Within = FormatDuration(p.Within)
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON writes; unknown fields are refused.
// It does not validate: Policies.Validate or Policy.Validate does.
func (p *Policy) UnmarshalJSON(b []byte) error {
	var j policyJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("retention policy: %w", err)
	}
	q := Policy{Last: j.Last, Hourly: j.Hourly, Daily: j.Daily, Weekly: j.Weekly, Monthly: j.Monthly, Yearly: j.Yearly}
	if j.Within != "" {
		d, err := ParseDuration(j.Within)
		if err != nil {
			return fmt.Errorf("retention policy: within: %w", err)
		}
		q.Within = d
	}
	*p = q
	return nil
}

// ParseDuration reads a duration for --keep-within: Go's syntax ("36h",
// "90m") or a whole number of days or weeks ("30d", "2w").
func ParseDuration(s string) (time.Duration, error) {
	unit := time.Duration(0)
	switch {
	case strings.HasSuffix(s, "d"):
		unit = 24 * time.Hour
	case strings.HasSuffix(s, "w"):
		unit = 7 * 24 * time.Hour
	}
	if unit == 0 {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration: write it as 30d, 2w or 36h", s)
		}
		return d, nil
	}
	n, err := strconv.Atoi(s[:len(s)-1])
	if err != nil || n < 0 || int64(n) > int64(MaxWithin/unit) {
		return 0, fmt.Errorf("%q is not a duration: write it as 30d, 2w or 36h, at most %s", s, FormatDuration(MaxWithin))
	}
	return time.Duration(n) * unit, nil
}

// FormatDuration writes d as ParseDuration reads it: whole days as "30d",
// anything else in Go's syntax.
func FormatDuration(d time.Duration) string {
	day := 24 * time.Hour
	if d > 0 && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}
