package drill

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/cofferhq/coffer/internal/termtext"
)

// Sort orders evidence by tenant, then VM, then start time.
func Sort(list []*Evidence) {
	slices.SortStableFunc(list, func(a, b *Evidence) int {
		return cmp.Or(cmp.Compare(a.Tenant, b.Tenant), cmp.Compare(a.VM, b.VM), a.Started.Compare(b.Started))
	})
}

// WriteTable writes the evidence as a table an auditor reads: one line per
// drill, the error of a failed one on the line below it.
func WriteTable(w io.Writer, list []*Evidence) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tVM\tSNAPSHOT\tWHEN\tBY\tTARGET\tDURATION\tRTO OBJECTIVE\tRTO\tRESULT")
	for _, e := range list {
		objective := "-"
		if e.RTOObjectiveSeconds > 0 {
			objective = seconds2(e.RTOObjectiveSeconds).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%.12s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(termtext.Clean(e.Tenant)), termtext.Clean(e.VM),
			e.SnapshotID, e.Started.UTC().Format(time.RFC3339), e.RunBy, termtext.Clean(e.Target),
			seconds2(e.DurationSeconds), objective, e.RTO, e.Result)
		if e.Error != "" {
			fmt.Fprintf(tw, "\t  error: %s\n", termtext.Clean(e.Error))
		}
	}
	return tw.Flush()
}

// seconds2 is a duration in seconds, to the millisecond.
func seconds2(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
