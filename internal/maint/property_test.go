package maint

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// randomCase draws items over about two years in a few groups, clustered so
// that buckets hold several items, and a valid policy.
func randomCase(r *rand.Rand) (Policy, []Item) {
	base := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 1 + r.IntN(120)
	items := make([]Item, n)
	for i := range items {
		at := base.Add(time.Duration(r.Int64N(int64(2 * 365 * 24 * time.Hour))))
		if i > 0 && r.IntN(4) == 0 { // near another one: same hour, day or week
			at = items[r.IntN(i)].Time.Add(time.Duration(r.IntN(3*24*60)) * time.Minute)
		}
		items[i] = Item{ID: fmt.Sprintf("i%03d", i), Group: fmt.Sprintf("vm%d", r.IntN(3)), Time: at}
	}
	pick := func() int {
		if r.IntN(2) == 0 {
			return 0
		}
		return r.IntN(15)
	}
	p := Policy{Last: pick(), Hourly: pick(), Daily: pick(), Weekly: pick(), Monthly: pick(), Yearly: pick()}
	if r.IntN(3) == 0 {
		p.Within = time.Duration(r.IntN(60*24)) * time.Hour
	}
	if p.Empty() {
		p.Daily = 1
	}
	return p, items
}

func forCases(t *testing.T, fn func(t *testing.T, p Policy, items []Item, loc *time.Location)) {
	locs := []*time.Location{time.UTC, mustLoc(t, "Europe/Amsterdam"), mustLoc(t, "America/New_York"), mustLoc(t, "America/Santiago"), mustLoc(t, "Australia/Lord_Howe")}
	r := rand.New(rand.NewPCG(19, 3))
	for i := range 300 {
		p, items := randomCase(r)
		loc := locs[i%len(locs)]
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Logf("policy %s, zone %s, %d items", p, loc, len(items))
			fn(t, p, items, loc)
		})
	}
}

func byID(ds []Decision) map[string]Decision {
	m := make(map[string]Decision, len(ds))
	for _, d := range ds {
		m[d.ID] = d
	}
	return m
}

func without(items []Item, id string) []Item {
	var out []Item
	for _, it := range items {
		if it.ID != id {
			out = append(out, it)
		}
	}
	return out
}

func TestPropertyNewestOfEachGroupKept(t *testing.T) {
	forCases(t, func(t *testing.T, p Policy, items []Item, loc *time.Location) {
		seen := map[string]bool{}
		for _, d := range Apply(p, items, loc) {
			if !seen[d.Group] && !d.Keep {
				t.Fatalf("the newest of %s, %s, is dropped", d.Group, d.ID)
			}
			seen[d.Group] = true
			if d.Keep != (len(d.Reasons) > 0) {
				t.Fatalf("%s: keep %v with reasons %q", d.ID, d.Keep, d.Reasons)
			}
		}
	})
}

func TestPropertyIdempotent(t *testing.T) {
	forCases(t, func(t *testing.T, p Policy, items []Item, loc *time.Location) {
		first := Apply(p, items, loc)
		var want []Decision
		for _, d := range first {
			if d.Keep {
				want = append(want, d)
			}
		}
		if again := Apply(p, keptItems(first), loc); !reflect.DeepEqual(again, want) {
			t.Fatalf("applied to what it keeps, the policy decides otherwise:\n%v\nwant\n%v", again, want)
		}
	})
}

func TestPropertyRemovingOneChangesNoOther(t *testing.T) {
	forCases(t, func(t *testing.T, p Policy, items []Item, loc *time.Location) {
		all := byID(Apply(p, items, loc))
		step := max(1, len(items)/20) // about 20 removals a case keep the test quick
		for i := 0; i < len(items); i += step {
			it := items[i]
			for _, d := range Apply(p, without(items, it.ID), loc) {
				before := all[d.ID]
				switch {
				case !all[it.ID].Keep && !reflect.DeepEqual(d, before):
					t.Fatalf("removing dropped %s changed %s: %v -> %v", it.ID, d.ID, before, d)
				case d.Group == it.Group && d.Time.After(it.Time) && !reflect.DeepEqual(d, before):
					t.Fatalf("removing %s changed the newer %s: %v -> %v", it.ID, d.ID, before, d)
				case d.Group != it.Group && !reflect.DeepEqual(d, before):
					t.Fatalf("removing %s of %s changed %s of %s", it.ID, it.Group, d.ID, d.Group)
				}
			}
		}
	})
}

func TestPropertyMoreKeepsNoFewer(t *testing.T) {
	forCases(t, func(t *testing.T, p Policy, items []Item, loc *time.Location) {
		base := byID(Apply(p, items, loc))
		for _, more := range []Policy{
			{Last: 1}, {Hourly: 1}, {Daily: 1}, {Weekly: 1}, {Monthly: 1}, {Yearly: 1}, {Within: time.Hour},
		} {
			q := Policy{Last: p.Last + more.Last, Within: p.Within + more.Within, Hourly: p.Hourly + more.Hourly,
				Daily: p.Daily + more.Daily, Weekly: p.Weekly + more.Weekly, Monthly: p.Monthly + more.Monthly, Yearly: p.Yearly + more.Yearly}
			for _, d := range Apply(q, items, loc) {
				if base[d.ID].Keep && !d.Keep {
					t.Fatalf("%s keeps %s, the larger %s drops it", p, d.ID, q)
				}
			}
		}
	})
}

func TestPropertyRulesKeepAtMostN(t *testing.T) {
	forCases(t, func(t *testing.T, p Policy, items []Item, loc *time.Location) {
		counts := map[string]int{} // group + rule -> kept
		for _, d := range Apply(p, items, loc) {
			for _, r := range d.Reasons {
				var rule string
				fmt.Sscan(r, &rule)
				counts[d.Group+" "+rule]++
			}
		}
		limits := map[string]int{"last": p.Last, "hourly": p.Hourly, "daily": p.Daily, "weekly": p.Weekly, "monthly": p.Monthly, "yearly": p.Yearly}
		for k, n := range counts {
			var group, rule string
			fmt.Sscan(k, &group, &rule)
			if lim, ok := limits[rule]; ok && n > lim {
				t.Fatalf("%s keeps %d by %s, the policy allows %d", group, n, rule, lim)
			}
		}
	})
}

func TestPropertyInputOrderDoesNotMatter(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	forCases(t, func(t *testing.T, p Policy, items []Item, loc *time.Location) {
		want := Apply(p, items, loc)
		shuffled := slices.Clone(items)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := Apply(p, shuffled, loc); !reflect.DeepEqual(got, want) {
			t.Fatal("shuffling the items changed the decisions")
		}
	})
}
