package xenrestore

import (
	"fmt"
	"net/url"
	"strings"
)

// Target is a restore's --to xapi://HOST/SR: a pool's master and an SR
// (its UUID or name-label).
type Target struct {
	Host, SR string
}

// ParseTarget parses a restore destination; ok is false when it is not a
// xapi:// URL (a path).
func ParseTarget(to string) (t Target, ok bool, err error) {
	if !strings.HasPrefix(to, "xapi://") {
		return t, false, nil
	}
	u, err := url.Parse(to)
	if err != nil {
		return t, true, fmt.Errorf("--to %s: %w", to, err)
	}
	t = Target{Host: u.Host, SR: strings.TrimPrefix(u.Path, "/")}
	if t.Host == "" || t.SR == "" || strings.Contains(t.SR, "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return t, true, fmt.Errorf("--to %s: want xapi://HOST/SR, SR being the storage repository's UUID or name (URL-escaped)", to)
	}
	return t, true, nil
}
