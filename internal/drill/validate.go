package drill

import (
	"encoding/hex"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/cofferhq/coffer/internal/termtext"
	"github.com/cofferhq/coffer/internal/vaultapi"
)

// Validate checks every field of the evidence, naming the first that is
// wrong.
func (e *Evidence) Validate() error {
	bad := func(field, why string) error { return fmt.Errorf("drill evidence: %s %s", field, why) }
	switch {
	case e.Version != Version:
		return bad("version", fmt.Sprintf("is %d; this coffer reads version %d", e.Version, Version))
	case e.RunBy != ByVault && e.RunBy != ByAgent:
		return bad("run_by", "is neither vault nor agent")
	case e.TenantID != "" && !vaultapi.ValidTenantID(e.TenantID):
		return bad("tenant_id", "is not a tenant id")
	case !isHexID(e.SnapshotID):
		return bad("snapshot_id", "is not 64 lower-case hex digits")
	case e.Pick != PickNewest && e.Pick != PickRandom:
		return bad("pick", "is neither newest nor random")
	case e.Result != Passed && e.Result != Failed:
		return bad("result", "is neither passed nor failed")
	case e.Result == Failed && e.Error == "":
		return bad("error", "is empty for a failed drill")
	case e.Result == Passed && e.Error != "":
		return bad("error", "is set for a passed drill")
	case e.RTO != RTOMet && e.RTO != RTOMissed && e.RTO != RTONoObjective:
		return bad("rto", "is neither met, missed nor no objective")
	case e.SnapshotTime.IsZero() || e.Started.IsZero() || e.Finished.IsZero():
		return bad("times", "are missing (snapshot_time, started, finished)")
	case e.Finished.Before(e.Started):
		return bad("finished", "is before started")
	case !seconds(e.DurationSeconds) || !seconds(e.RTOObjectiveSeconds):
		return bad("duration_seconds or rto_objective_seconds", "is negative or not a number")
	case e.Size < 0 || e.Fetched < 0:
		return bad("bytes_size or bytes_fetched", "is negative")
	case len(e.Disks) > maxDisks:
		return bad("disks", fmt.Sprintf("lists %d disks, more than %d", len(e.Disks), maxDisks))
	}
	for _, f := range []struct{ name, v string }{{"tenant", e.Tenant}, {"vm", e.VM}, {"host", e.Host}, {"target", e.Target}} {
		if err := cleanText(f.v, maxText); err != nil {
			return bad(f.name, err.Error())
		}
	}
	if e.VM == "" || e.Target == "" {
		return bad("vm or target", "is empty")
	}
	if err := cleanText(e.Error, maxErrorText); err != nil {
		return bad("error", err.Error())
	}
	for i, d := range e.Disks {
		if d.Index < 0 || d.Size < 0 || d.Fetched < 0 || (d.Digest != "" && !isHexID(d.Digest)) {
			return bad(fmt.Sprintf("disks[%d]", i), "has a negative number or a digest that is not 64 hex digits")
		}
	}
	return nil
}

// cleanText accepts text a terminal shows as it is, of at most n
// characters.
func cleanText(s string, n int) error {
	if utf8.RuneCountInString(s) > n {
		return fmt.Errorf("is longer than %d characters", n)
	}
	if termtext.Clean(s) != s {
		return fmt.Errorf("holds control characters or invalid UTF-8")
	}
	return nil
}

func seconds(f float64) bool { return f >= 0 && !math.IsInf(f, 0) && !math.IsNaN(f) }

func isHexID(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && s == lower(s)
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'F' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
