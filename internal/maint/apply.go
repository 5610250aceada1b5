package maint

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Item is one snapshot as retention sees it.
type Item struct {
	ID    string    `json:"id"`
	Group string    `json:"vm"` // the VM's name: each group is decided on its own
	Time  time.Time `json:"time"`
}

// Decision says whether an Item stays, and every rule that keeps it.
type Decision struct {
	Item
	Keep    bool     `json:"keep"`
	Reasons []string `json:"reasons"` // for example "last 1", "daily 2026-12-04", "weekly 2026-W49"; empty when dropped
}

// ReasonNoPolicy is the one reason given when Apply is handed a policy that
// does not validate: it keeps everything rather than guess.
const ReasonNoPolicy = "policy keeps nothing or is invalid: nothing is removed"

// Apply decides every item under p, each group on its own, calendar buckets
// in loc (UTC when nil). The decisions come ordered by group, then newest
// first (ties by ID). A policy that does not validate keeps every item.
func Apply(p Policy, items []Item, loc *time.Location) []Decision {
	return applyEach(items, loc, func(string) Policy { return p })
}

// Apply decides every item under the policy of its group.
func (ps Policies) Apply(items []Item, loc *time.Location) []Decision {
	return applyEach(items, loc, ps.For)
}

func applyEach(items []Item, loc *time.Location, policyOf func(group string) Policy) []Decision {
	if loc == nil {
		loc = time.UTC
	}
	sorted := slices.Clone(items)
	slices.SortStableFunc(sorted, compareItems)
	out := make([]Decision, 0, len(sorted))
	for start := 0; start < len(sorted); {
		end := start + 1
		for end < len(sorted) && sorted[end].Group == sorted[start].Group {
			end++
		}
		out = append(out, decideGroup(policyOf(sorted[start].Group), sorted[start:end], loc)...)
		start = end
	}
	return out
}

// compareItems orders by group, then newest first, then by ID.
func compareItems(a, b Item) int {
	if c := cmp.Compare(a.Group, b.Group); c != 0 {
		return c
	}
	if c := b.Time.Compare(a.Time); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// decideGroup decides one group's items, sorted newest first.
func decideGroup(p Policy, items []Item, loc *time.Location) []Decision {
	out := make([]Decision, len(items))
	for i, it := range items {
		out[i].Item = it
	}
	if p.Validate() != nil {
		for i := range out {
			out[i] = Decision{Item: items[i], Keep: true, Reasons: []string{ReasonNoPolicy}}
		}
		return out
	}
	keepLast(p.Last, out)
	keepWithin(p.Within, out)
	for _, b := range bucketRules(p) {
		keepBuckets(b, out, loc)
	}
	return out
}

func keep(d *Decision, reason string) {
	d.Keep = true
	d.Reasons = append(d.Reasons, reason)
}

func keepLast(n int, out []Decision) {
	for i := 0; i < n && i < len(out); i++ {
		keep(&out[i], "last "+strconv.Itoa(i+1))
	}
}

func keepWithin(d time.Duration, out []Decision) {
	if d <= 0 || len(out) == 0 {
		return
	}
	oldest := out[0].Time.Add(-d)
	for i := range out {
		if !out[i].Time.Before(oldest) {
			keep(&out[i], "within "+FormatDuration(d))
		}
	}
}

// bucketRule is one calendar rule: how many buckets it keeps and the name of
// an instant's bucket.
type bucketRule struct {
	name   string
	n      int
	bucket func(t time.Time) string
}

func bucketRules(p Policy) []bucketRule {
	return []bucketRule{
		{"hourly", p.Hourly, hourBucket},
		{"daily", p.Daily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.Weekly, weekBucket},
		{"monthly", p.Monthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"yearly", p.Yearly, func(t time.Time) string { return t.Format("2006") }},
	}
}

// hourBucket is the wall-clock hour with its offset: the hour repeated when
// daylight saving time ends is two buckets.
func hourBucket(t time.Time) string { return t.Format("2006-01-02 15:00 -0700") }

// weekBucket is the ISO 8601 week.
func weekBucket(t time.Time) string {
	y, w := t.ISOWeek()
	return fmt.Sprintf("%04d-W%02d", y, w)
}

// keepBuckets keeps the newest item of each of the rule's n newest buckets.
// Items are newest first, so a bucket's first item is its newest.
func keepBuckets(r bucketRule, out []Decision, loc *time.Location) {
	last, kept := "", 0
	for i := range out {
		if kept >= r.n {
			return
		}
		b := r.bucket(out[i].Time.In(loc))
		if i > 0 && b == last {
			continue
		}
		last = b
		kept++
		keep(&out[i], r.name+" "+b)
	}
}

// Split divides decisions into those kept and those to remove, each in
// Apply's order: what prune deletes and what its dry run lists.
func Split(ds []Decision) (keep, remove []Decision) {
	for _, d := range ds {
		if d.Keep {
			keep = append(keep, d)
		} else {
			remove = append(remove, d)
		}
	}
	return keep, remove
}
