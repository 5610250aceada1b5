package maint

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// kept is the IDs Apply keeps, in its order, with their reasons.
func kept(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		if d.Keep {
			out = append(out, d.ID+": "+strings.Join(d.Reasons, ", "))
		}
	}
	return out
}

func TestApplyCases(t *testing.T) {
	ams := mustLoc(t, "Europe/Amsterdam")
	ny := mustLoc(t, "America/New_York")
	at := func(loc *time.Location, y int, m time.Month, d, hh, mm int) time.Time {
		return time.Date(y, m, d, hh, mm, 0, 0, loc)
	}
	// 2028-10-29 02:30 happens twice in Amsterdam: 00:30 and 01:30 UTC.
	fallBack := time.Date(2028, 10, 29, 0, 30, 0, 0, time.UTC)
	cases := []struct {
		name  string
		p     Policy
		loc   *time.Location
		items []Item
		want  []string
	}{
		{"two in one night: the later one is the day's", Policy{Daily: 2}, ams, []Item{
			{"a", "vm", at(ams, 2028, 3, 1, 2, 30)}, {"b", "vm", at(ams, 2028, 3, 1, 23, 55)},
			{"c", "vm", at(ams, 2028, 3, 2, 0, 5)}, {"d", "vm", at(ams, 2028, 2, 29, 2, 30)},
		}, []string{"c: daily 2028-03-02", "b: daily 2028-03-01"}},
		{"the day is the zone's, not UTC's", Policy{Daily: 2}, ny, []Item{
			{"late", "vm", at(ny, 2028, 3, 1, 22, 0)}, {"early", "vm", at(ny, 2028, 3, 1, 1, 0)},
			{"prev", "vm", at(ny, 2028, 2, 29, 23, 0)},
		}, []string{"late: daily 2028-03-01", "prev: daily 2028-02-29"}},
		{"the repeated hour is two hourly buckets", Policy{Hourly: 3}, ams, []Item{
			{"first", "vm", fallBack}, {"second", "vm", fallBack.Add(time.Hour)},
			{"second2", "vm", fallBack.Add(time.Hour - time.Minute)}, {"before", "vm", fallBack.Add(-time.Hour)},
		}, []string{"second: hourly 2028-10-29 02:00 +0100", "first: hourly 2028-10-29 02:00 +0200", "before: hourly 2028-10-29 01:00 +0200"}},
		{"ISO weeks cross the new year", Policy{Weekly: 3}, time.UTC, []Item{
			{"w53", "vm", at(time.UTC, 2027, 1, 2, 1, 0)}, {"w53b", "vm", at(time.UTC, 2026, 12, 28, 1, 0)},
			{"w01", "vm", at(time.UTC, 2027, 1, 4, 1, 0)}, {"w52", "vm", at(time.UTC, 2026, 12, 27, 1, 0)},
		}, []string{"w01: weekly 2027-W01", "w53: weekly 2026-W53", "w52: weekly 2026-W52"}},
		{"missed months do not count", Policy{Monthly: 2, Yearly: 1}, time.UTC, []Item{
			{"jun", "vm", at(time.UTC, 2028, 6, 1, 1, 0)}, {"jan", "vm", at(time.UTC, 2028, 1, 31, 1, 0)},
			{"dec", "vm", at(time.UTC, 2027, 12, 31, 1, 0)},
		}, []string{"jun: monthly 2028-06, yearly 2028", "jan: monthly 2028-01"}},
		{"within counts from the group's newest, last by position", Policy{Last: 1, Within: 48 * time.Hour}, time.UTC, []Item{
			{"n", "vm", at(time.UTC, 2028, 5, 3, 0, 0)}, {"edge", "vm", at(time.UTC, 2028, 5, 1, 0, 0)},
			{"old", "vm", at(time.UTC, 2028, 4, 30, 23, 59)},
		}, []string{"n: last 1, within 2d", "edge: within 2d"}},
		{"same time: ties go by ID", Policy{Last: 1, Daily: 1}, time.UTC, []Item{
			{"b", "vm", at(time.UTC, 2028, 5, 3, 0, 0)}, {"a", "vm", at(time.UTC, 2028, 5, 3, 0, 0)},
		}, []string{"a: last 1, daily 2028-05-03"}},
		{"each group on its own, in name order", Policy{Last: 1}, time.UTC, []Item{
			{"x1", "web", at(time.UTC, 2028, 5, 3, 0, 0)}, {"y1", "db", at(time.UTC, 2028, 5, 1, 0, 0)},
			{"x2", "web", at(time.UTC, 2028, 5, 4, 0, 0)}, {"y2", "db", at(time.UTC, 2028, 4, 1, 0, 0)},
		}, []string{"y1: last 1", "x2: last 1"}},
		{"an empty policy keeps everything", Policy{}, time.UTC, []Item{
			{"a", "vm", at(time.UTC, 2028, 5, 3, 0, 0)}, {"b", "vm", at(time.UTC, 2020, 5, 3, 0, 0)},
		}, []string{"a: " + ReasonNoPolicy, "b: " + ReasonNoPolicy}},
		{"a negative policy keeps everything", Policy{Last: -1, Daily: 1}, time.UTC, []Item{
			{"a", "vm", at(time.UTC, 2028, 5, 3, 0, 0)}, {"b", "vm", at(time.UTC, 2028, 5, 3, 1, 0)},
		}, []string{"b: " + ReasonNoPolicy, "a: " + ReasonNoPolicy}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := kept(Apply(c.p, c.items, c.loc))
			if !slices.Equal(got, c.want) {
				t.Errorf("kept\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
}

func TestApplyDoesNotReorderInput(t *testing.T) {
	items := []Item{{"b", "vm", time.Unix(1, 0)}, {"a", "vm", time.Unix(2, 0)}}
	ds := Apply(Policy{Last: 5}, items, nil)
	if items[0].ID != "b" || len(ds) != 2 || ds[0].ID != "a" {
		t.Fatalf("input %v, decisions %v", items, ds)
	}
}

func TestPoliciesApplyPerGroup(t *testing.T) {
	ps := Policies{Default: Policy{Last: 1}, PerGroup: map[string]Policy{"db": {Last: 2}}}
	var items []Item
	for i, g := range []string{"db", "db", "db", "web", "web"} {
		items = append(items, Item{ID: g + string(rune('0'+i)), Group: g, Time: time.Unix(int64(i), 0)})
	}
	got := kept(ps.Apply(items, time.UTC))
	want := []string{"db2: last 1", "db1: last 2", "web4: last 1"}
	if !slices.Equal(got, want) {
		t.Fatalf("kept %v, want %v", got, want)
	}
}

func TestSplit(t *testing.T) {
	items := []Item{{"a", "vm", time.Unix(3, 0)}, {"b", "vm", time.Unix(2, 0)}, {"c", "vm", time.Unix(1, 0)}}
	keep, remove := Split(Apply(Policy{Last: 2}, items, nil))
	if len(keep) != 2 || keep[0].ID != "a" || keep[1].ID != "b" || len(remove) != 1 || remove[0].ID != "c" || remove[0].Reasons != nil {
		t.Fatalf("keep %v, remove %v", keep, remove)
	}
}
