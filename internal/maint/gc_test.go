package maint

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func pid(c byte) string { return strings.Repeat(string(c), 64) }

var t0 = time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)

func params(now time.Time) GCParams {
	return GCParams{Now: now, Grace: DefaultGrace, SessionTTL: time.Hour, TombstoneTTL: 30 * 24 * time.Hour}
}

// TestPlanMarksThenCondemnsAfterGrace walks one unneeded pack through its
// life: too young, marked, waiting, condemned, forgotten.
func TestPlanMarksThenCondemnsAfterGrace(t *testing.T) {
	a, b := pid('a'), pid('b')
	packs := []PackInfo{{ID: a, Size: 10, ModTime: t0}, {ID: b, Size: 20, ModTime: t0}}
	needed := map[string]bool{a: true}

	st, plan := Plan(nil, needed, packs, params(t0.Add(time.Hour)))
	if plan.Young != 1 || len(plan.NewMarks) != 0 || plan.Needed != 1 {
		t.Fatalf("a young pack was not left alone: %+v", plan)
	}
	st, plan = Plan(st, needed, packs, params(t0.Add(25*time.Hour)))
	if !slices.Equal(plan.NewMarks, []string{b}) {
		t.Fatalf("marks %v, want [b]", plan.NewMarks)
	}
	st, plan = Plan(st, needed, packs, params(t0.Add(48*time.Hour)))
	if plan.Waiting != 1 || len(plan.Condemned) != 0 {
		t.Fatalf("condemned inside the grace: %+v", plan)
	}
	st, plan = Plan(st, needed, packs, params(t0.Add(49*time.Hour+time.Minute)))
	if !slices.Equal(plan.Condemned, []string{b}) || st.Deleting[b].Size != 20 {
		t.Fatalf("not condemned after the grace: %+v %+v", plan, st.Deleting)
	}
	if _, rej := Claim(st, []string{a, b}); rej == nil || !slices.Equal(rej.Deleting, []string{b}) {
		t.Fatalf("a receipt naming a condemned pack was not refused: %+v", rej)
	}
	st = st.Forgotten(b, t0.Add(50*time.Hour))
	if _, ok := st.Deleted[b]; !ok || len(st.Deleting) != 0 {
		t.Fatalf("not a tombstone: %+v", st)
	}
	if !slices.Equal(st.Unusable(), []string{b}) {
		t.Fatalf("unusable %v", st.Unusable())
	}
	st, _ = Plan(st, needed, packs[:1], params(t0.Add(33*24*time.Hour)))
	if len(st.Deleted) != 0 {
		t.Fatalf("tombstone kept past its time: %+v", st.Deleted)
	}
}

// TestClaimTakesBackAMarkedPack: a receipt naming a marked pack keeps it.
func TestClaimTakesBackAMarkedPack(t *testing.T) {
	b := pid('b')
	packs := []PackInfo{{ID: b, Size: 20, ModTime: t0}}
	st, _ := Plan(nil, nil, packs, params(t0.Add(25*time.Hour)))
	st2, rej := Claim(st, []string{b})
	if rej != nil || len(st2.Marked) != 0 {
		t.Fatalf("claim: %+v %+v", st2, rej)
	}
	if len(st.Marked) != 1 {
		t.Fatal("Claim changed its input")
	}
	_, plan := Plan(st2, nil, packs, params(t0.Add(50*time.Hour)))
	if len(plan.Condemned) != 0 || !slices.Equal(plan.NewMarks, []string{b}) {
		t.Fatalf("a claimed pack must start its grace again: %+v", plan)
	}
}

// TestSessionHoldsMarksMadeAfterItBegan: a live session that began before
// a mark keeps the pack past the grace; once it ends, the pack goes.
func TestSessionHoldsMarksMadeAfterItBegan(t *testing.T) {
	b := pid('b')
	packs := []PackInfo{{ID: b, Size: 20, ModTime: t0}}
	st := (*GCState)(nil).Begin("s1", t0.Add(24*time.Hour))
	st, _ = Plan(st, nil, packs, params(t0.Add(25*time.Hour)))
	now := t0.Add(50 * time.Hour)
	st, _ = st.Beat("s1", now)
	st, plan := Plan(st, nil, packs, params(now))
	if len(plan.Condemned) != 0 || plan.Waiting != 1 {
		t.Fatalf("a live session older than the mark did not hold the pack: %+v", plan)
	}
	// A session that stops beating dies after its TTL.
	_, plan = Plan(st, nil, packs, params(now.Add(2*time.Hour)))
	if !slices.Equal(plan.Condemned, []string{b}) {
		t.Fatalf("a dead session still holds the pack: %+v", plan)
	}
	// A session that began after the mark does not hold it.
	st2 := st.End("s1").Begin("s2", now)
	_, plan = Plan(st2, nil, packs, params(now.Add(time.Minute)))
	if !slices.Equal(plan.Condemned, []string{b}) {
		t.Fatalf("a session younger than the mark held the pack: %+v", plan)
	}
}
