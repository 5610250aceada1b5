package localstate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/repo"
)

func snap(id, name string, t time.Time) *repo.SnapshotInfo {
	return &repo.SnapshotInfo{ID: id, Snapshot: &manifest.Snapshot{Name: name, Time: t}}
}

func TestRecordKeepsNewest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "repo1")
	t0 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	for _, r := range []struct {
		name, id string
		at       time.Time
	}{{"web01", "aa", t0}, {"web01", "bb", t0.Add(time.Hour)}, {"web01", "cc", t0.Add(-time.Hour)}, {"db01", "dd", t0}} {
		if err := Record(dir, r.name, r.id, r.at); err != nil {
			t.Fatal(err)
		}
	}
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m["web01"].ID != "bb" || m["db01"].ID != "dd" || !m["web01"].Time.Equal(t0.Add(time.Hour)) {
		t.Fatalf("remembered %+v", m)
	}
	if fi, err := os.Stat(filepath.Join(dir, newestFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("memory file: %v, %v", fi, err)
	}
}

func TestCheckFindsRollback(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 12, 1, 2, 0, 0, 0, time.UTC)
	if err := Record(dir, "web01", "newest", t0); err != nil {
		t.Fatal(err)
	}
	if err := Record(dir, "db01", "db-newest", t0); err != nil {
		t.Fatal(err)
	}
	older := snap("older0000000000", "web01", t0.Add(-24*time.Hour))
	dbOK := snap("db-newest", "db01", t0)
	cases := []struct {
		what  string
		snaps []*repo.SnapshotInfo
		name  string
		want  []string // names with a rollback
	}{
		{"all present", []*repo.SnapshotInfo{older, snap("newest", "web01", t0), dbOK}, "", nil},
		{"newest hidden", []*repo.SnapshotInfo{older, dbOK}, "", []string{"web01"}},
		{"newest hidden, other name asked", []*repo.SnapshotInfo{older, dbOK}, "db01", nil},
		{"a newer one from another machine", []*repo.SnapshotInfo{older, snap("other", "web01", t0.Add(time.Minute)), dbOK}, "", nil},
		{"everything hidden", nil, "", []string{"db01", "web01"}},
	}
	for _, c := range cases {
		rbs, err := Check(dir, c.snaps, c.name)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, rb := range rbs {
			got = append(got, rb.Name)
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: rollbacks %v, want %v", c.what, got, c.want)
		}
	}
	rbs, _ := Check(dir, []*repo.SnapshotInfo{older}, "web01")
	if len(rbs) != 1 || rbs[0].Newest != older {
		t.Fatalf("rollback %+v; want the older snapshot as the newest shown", rbs)
	}
	msg := rbs[0].String()
	for _, want := range []string{"newest", `"web01"`, "older000000", "hiding newer snapshots"} {
		if !strings.Contains(msg, want) {
			t.Errorf("warning %q lacks %q", msg, want)
		}
	}
}

func TestDirFollowsXDG(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/var/state")
	if got := Dir("abc"); got != "/var/state/coffer/abc" {
		t.Errorf("Dir = %s", got)
	}
	t.Setenv("XDG_STATE_HOME", "relative/ignored")
	t.Setenv("HOME", "/home/u")
	if got := Dir("abc"); got != "/home/u/.local/state/coffer/abc" {
		t.Errorf("Dir = %s", got)
	}
}
