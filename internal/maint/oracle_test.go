package maint

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"
)

// oracle decides as the package doc says, written another way: each
// calendar rule groups items into buckets with a map, orders the buckets by
// their newest item and keeps the newest item of the first N. Apply streams
// instead, which is right only if every bucket's items are contiguous in
// time; the oracle does not assume it.
func oracle(p Policy, items []Item, loc *time.Location) []Decision {
	sorted := slices.Clone(items)
	slices.SortFunc(sorted, compareItems)
	groups := map[string][]Item{}
	var names []string
	for _, it := range sorted {
		if _, ok := groups[it.Group]; !ok {
			names = append(names, it.Group)
		}
		groups[it.Group] = append(groups[it.Group], it)
	}
	var out []Decision
	for _, g := range names {
		out = append(out, oracleGroup(p, groups[g], loc)...)
	}
	return out
}

func oracleGroup(p Policy, items []Item, loc *time.Location) []Decision {
	reasons := make([][]string, len(items))
	for i := range items {
		if i < p.Last {
			reasons[i] = append(reasons[i], "last "+strconv.Itoa(i+1))
		}
	}
	for i, it := range items {
		if p.Within > 0 && items[0].Time.Sub(it.Time) <= p.Within {
			reasons[i] = append(reasons[i], "within "+FormatDuration(p.Within))
		}
	}
	for _, r := range bucketRules(p) {
		newest := map[string]int{} // bucket -> index of its newest item
		for i, it := range items {
			b := r.bucket(it.Time.In(loc))
			if j, ok := newest[b]; !ok || compareItems(it, items[j]) < 0 {
				newest[b] = i
			}
		}
		var buckets []string
		for b := range newest {
			buckets = append(buckets, b)
		}
		slices.SortFunc(buckets, func(a, b string) int { return cmp.Compare(newest[a], newest[b]) })
		for _, b := range buckets[:min(r.n, len(buckets))] {
			reasons[newest[b]] = append(reasons[newest[b]], r.name+" "+b)
		}
	}
	out := make([]Decision, len(items))
	for i, it := range items {
		out[i] = Decision{Item: it, Keep: len(reasons[i]) > 0, Reasons: reasons[i]}
	}
	return out
}

func TestApplyMatchesOracle(t *testing.T) {
	forCases(t, func(t *testing.T, p Policy, items []Item, loc *time.Location) {
		if got, want := Apply(p, items, loc), oracle(p, items, loc); !reflect.DeepEqual(got, want) {
			t.Fatalf("Apply and the oracle differ:\n%v\n%v", got, want)
		}
	})
}

// The simulated years, under every rule alone and all together, in zones
// whose clocks change at 02:00, at midnight (Santiago, Beirut) and by half
// an hour (Lord Howe).
func TestYearMatchesOracle(t *testing.T) {
	policies := []Policy{{Last: 30}, {Within: 45 * 24 * time.Hour}, {Hourly: 40}, {Daily: 100}, {Weekly: 30},
		{Monthly: 9}, {Yearly: 5}, {Last: 3, Daily: 10, Weekly: 6, Monthly: 12, Yearly: 2}}
	for _, zone := range []string{"Europe/Amsterdam", "America/New_York", "America/Santiago", "Asia/Beirut", "Australia/Lord_Howe"} {
		loc := mustLoc(t, zone)
		var items []Item
		for _, hh := range []int{0, 2, 23} {
			for i, ev := range nightlyEvents(loc, hh) {
				items = append(items, Item{ID: fmt.Sprintf("%02d-%03d", hh, i), Group: "vm" + strconv.Itoa(hh), Time: ev})
			}
		}
		for _, p := range policies {
			if got, want := Apply(p, items, loc), oracle(p, items, loc); !reflect.DeepEqual(got, want) {
				t.Errorf("%s, %s: Apply and the oracle differ", zone, p)
			}
		}
	}
}
