package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/testutil/repofixture"
)

func init() { repofixture.UseInsecureKDF() }

// stepClock advances by step on every reading, so a drill that reads the
// clock twice takes exactly step.
type stepClock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.now
	c.now = c.now.Add(c.step)
	return t
}

func (c *stepClock) Sleep(ctx context.Context, d time.Duration) error { return ctx.Err() }

var t0 = time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)

// fixture returns a repository with two snapshots of vm and one of db.
func fixture(t *testing.T) (*repofixture.Fixture, *repofixture.Image, []*repo.SnapshotInfo) {
	f := repofixture.New(t, "drill test passphrase")
	im := repofixture.SampleImage()
	small := &repofixture.Image{Size: 5000, Pieces: []repofixture.Piece{{Off: 10, Data: []byte("hello, disk")}}}
	f.Snapshot("vm", f.Disk(0, small, nil))
	f.Snapshot("vm", f.Disk(0, im, nil), f.Disk(1, small, nil))
	f.Snapshot("db", f.Disk(0, small, nil))
	snaps, err := f.Reopen().Snapshots(t.Context(), nil)
	if err != nil || len(snaps) != 3 {
		t.Fatalf("snapshots: %v %v", len(snaps), err)
	}
	return f, im, snaps
}

func TestRunPassesAndMeetsObjective(t *testing.T) {
	f, im, snaps := fixture(t)
	names, byName := ByVM(snaps, "")
	if strings.Join(names, ",") != "db,vm" || len(byName["vm"]) != 2 {
		t.Fatalf("ByVM: %v %v", names, byName)
	}
	snap, err := Pick(byName["vm"], PickNewest, nil)
	if err != nil || len(snap.Disks) != 2 {
		t.Fatalf("Pick newest: %v %v", snap, err)
	}
	clk := &stepClock{now: t0, step: 90 * time.Second}
	for _, c := range []struct {
		objective time.Duration
		want      string
	}{{2 * time.Minute, RTOMet}, {time.Minute, RTOMissed}, {0, RTONoObjective}} {
		e := Run(t.Context(), f.Reopen(), snap, Options{Clock: clk, Objective: c.objective, RunBy: ByAgent})
		if !e.Passed() || e.Error != "" || e.RTO != c.want || e.DurationSeconds != 90 || e.Duration() != 90*time.Second {
			t.Fatalf("objective %v: %+v", c.objective, e)
		}
		if e.Target != TargetVerifyOnly || len(e.Disks) != 2 || !e.Disks[0].Verified || !e.Disks[1].Verified ||
			e.Size != im.Size+5000 || e.Fetched == 0 || e.SnapshotID != snap.ID || e.VM != "vm" {
			t.Fatalf("evidence %+v", e)
		}
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
	}
}

// A drill into scratch space restores each disk there and removes it.
func TestRunScratch(t *testing.T) {
	f, _, snaps := fixture(t)
	scratch := t.TempDir()
	e := Run(t.Context(), f.Reopen(), snaps[1], Options{Scratch: scratch, RunBy: ByVault})
	if !e.Passed() || e.Target != ScratchTarget(scratch) || !e.Disks[0].Verified {
		t.Fatalf("%+v", e)
	}
	if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
		t.Fatalf("the scratch copy was left behind: %v", ents)
	}
}

// A flipped byte in a pack fails the drill, naming the damage; a failed
// drill misses any objective, however fast.
func TestRunTampered(t *testing.T) {
	f, im, snaps := fixture(t)
	r := f.Reopen()
	id := f.ID(im.Pieces[2].Data[100<<10 : 400<<10])
	loc, ok := r.Index.Lookup(id)
	if !ok {
		t.Fatal("chunk not indexed")
	}
	p := filepath.Join(f.Dir, filepath.FromSlash(repo.PackName(loc.Pack)))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[loc.Offset+loc.Length/2] ^= 1
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, scratch := range []string{"", t.TempDir()} {
		e := Run(t.Context(), f.Reopen(), snaps[1], Options{Clock: &stepClock{now: t0, step: time.Second},
			Objective: time.Hour, RunBy: ByVault, Scratch: scratch})
		if e.Passed() || e.Result != Failed || e.RTO != RTOMissed || !strings.Contains(e.Error, "disk 0") ||
			!strings.Contains(e.Error, "chunk "+id.String()) || !strings.Contains(e.Error, "damaged") {
			t.Fatalf("scratch %q: %+v", scratch, e)
		}
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
		if scratch != "" {
			if ents, _ := os.ReadDir(scratch); len(ents) != 0 {
				t.Fatalf("a failed drill left %v", ents)
			}
		}
	}
}

func TestPick(t *testing.T) {
	_, _, snaps := fixture(t)
	_, byName := ByVM(snaps, "vm")
	if len(byName) != 1 {
		t.Fatalf("ByVM with a name: %v", byName)
	}
	seen := map[string]bool{}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 40 {
		s, err := Pick(byName["vm"], PickRandom, rng)
		if err != nil {
			t.Fatal(err)
		}
		seen[s.ID] = true
	}
	if len(seen) != 2 {
		t.Fatalf("random picked %d distinct snapshots of 2", len(seen))
	}
	if _, err := Pick(nil, PickNewest, rng); err == nil {
		t.Fatal("Pick of nothing succeeded")
	}
	if _, err := Pick(byName["vm"], "oldest", rng); err == nil || !strings.Contains(err.Error(), "newest or random") {
		t.Fatalf("Pick oldest: %v", err)
	}
}

// sample is valid evidence of a failed drill.
func sample() *Evidence {
	e := &Evidence{Version: Version, Tenant: "acme", TenantID: "0123456789abcdef01234567", RunBy: ByVault, VM: "web01",
		SnapshotID: strings.Repeat("ab", 32), SnapshotTime: t0.Add(-time.Hour), Pick: PickNewest, Target: TargetVerifyOnly,
		Disks: []Disk{{Index: 0, Size: 10, Digest: strings.Repeat("cd", 32)}}, Size: 10}
	e.finish(t0, t0.Add(3*time.Second), time.Minute, os.ErrNotExist)
	return e
}

func TestEvidenceRoundTripAndTable(t *testing.T) {
	e := sample()
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"tenant": "acme"`, `"snapshot_id"`, `"started": "2026-12-05T03:00:00Z"`, `"duration_seconds": 3`,
		`"result": "failed"`, `"error": "file does not exist"`, `"rto_objective_seconds": 60`, `"rto": "missed"`, `"bytes_fetched"`} {
		if !bytes.Contains(b, []byte(field)) {
			t.Errorf("JSON lacks %s:\n%s", field, b)
		}
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(got)
	first, _ := json.Marshal(e)
	if !bytes.Equal(again, first) {
		t.Fatalf("round trip changed the evidence:\n%s\n%s", first, again)
	}
	pass := sample()
	pass.Error = ""
	pass.finish(t0, t0.Add(30*time.Second), time.Minute, nil)
	var tb strings.Builder
	if err := WriteTable(&tb, []*Evidence{pass, e}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(tb.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "RTO OBJECTIVE") ||
		!strings.Contains(lines[1], "30s") || !strings.Contains(lines[1], "1m0s") || !strings.Contains(lines[1], "met") ||
		!strings.HasSuffix(lines[1], "passed") || !strings.HasSuffix(lines[2], "failed") || !strings.Contains(lines[2], "missed") ||
		!strings.Contains(lines[3], "error: file does not exist") || !strings.Contains(lines[1], "ababababab") {
		t.Fatalf("table:\n%s", tb.String())
	}
}

func TestParseRejects(t *testing.T) {
	good, _ := sample().Marshal()
	for _, c := range []struct{ name, from, to, want string }{
		{"version", `"version": 1`, `"version": 2`, "version"},
		{"snapshot id", `"snapshot_id": "abab`, `"snapshot_id": "ABAB`, "snapshot_id"},
		{"result", `"result": "failed"`, `"result": "ok"`, "result"},
		{"rto", `"rto": "missed"`, `"rto": "fine"`, "rto"},
		{"vm control", `"vm": "web01"`, `"vm": "web\u001b[2J"`, "vm holds control"},
		{"tenant id", `"tenant_id": "0123`, `"tenant_id": "../0123`, "tenant_id"},
		{"negative", `"bytes_size": 10`, `"bytes_size": -1`, "negative"},
		{"unknown field", `"version": 1`, `"version": 1, "x": 1`, "unknown field"},
		{"finished early", `"finished": "2026-12-05T03:00:03Z"`, `"finished": "2026-12-05T02:00:03Z"`, "before started"},
		{"run by", `"run_by": "vault"`, `"run_by": "me"`, "run_by"},
	} {
		b := strings.Replace(string(good), c.from, c.to, 1)
		if b == string(good) {
			t.Fatalf("%s: %q not in the sample", c.name, c.from)
		}
		if _, err := Parse([]byte(b)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
	}
	for _, b := range []string{"", "[]", string(good) + "{}", strings.Repeat(" ", MaxEvidenceSize+1)} {
		if _, err := Parse([]byte(b)); err == nil {
			t.Errorf("Parse(%.20q) succeeded", b)
		}
	}
}

func FuzzParse(f *testing.F) {
	good, _ := sample().Marshal()
	f.Add(good)
	f.Add([]byte(`{"version":1}`))
	f.Add([]byte(`{"version":1,"disks":[{"index":-1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		if err != nil {
			return
		}
		again, err := e.Marshal()
		if err != nil {
			t.Fatalf("parsed evidence does not marshal: %v", err)
		}
		if _, err := Parse(again); err != nil {
			t.Fatalf("re-marshalled evidence does not parse: %v", err)
		}
		var tb strings.Builder
		if err := WriteTable(&tb, []*Evidence{e}); err != nil {
			t.Fatal(err)
		}
	})
}
