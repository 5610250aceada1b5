package vault

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSanitizePath(t *testing.T) {
	good := []string{"/healthz", "/v1/list?prefix=data%2F", "/v1/repo/config", "/v1/repo/data/ab/" + strings.Repeat("ab", 32), "/"}
	for _, u := range good {
		if _, _, err := sanitizePath(u); err != nil {
			t.Errorf("%q refused: %v", u, err)
		}
	}
	bad := []string{"", "*", "v1/repo/config", "http://h/v1/repo/config", "//x", "/v1//x", "/v1/repo/", "/v1/./x",
		"/v1/../x", "/v1/.x", "/v1/%2e", "/v1/a\\b", "/v1/a b", "/v1/\xef\xbd\x84", "/v1/repo/" + strings.Repeat("a", 257),
		"/" + strings.Repeat("a", 600), "/v1/list?x#y"}
	for _, u := range bad {
		if _, _, err := sanitizePath(u); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"/v1/repo/config", "/v1/repo/../x", "/v1/repo/%2e%2e/x", "//x", "/v1/list?prefix=keys/&after=keys/00",
		"/v1/repo/\uff44ata", "/v1/repo/..\\x", "http://h/x", "*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		path, query, err := sanitizePath(uri)
		if err != nil {
			return
		}
		if !strings.HasPrefix(uri, path) || len(path) > maxPathLen || len(uri) > maxURILen {
			t.Fatalf("%q -> %q", uri, path)
		}
		if query != "" && !strings.HasSuffix(uri, "?"+query) {
			t.Fatalf("%q -> query %q", uri, query)
		}
		if !utf8.ValidString(path) || strings.ContainsAny(path, "%\\ \x00") || strings.Contains(path, "//") ||
			strings.Contains(path, "/.") || path[0] != '/' {
			t.Fatalf("unsafe path accepted: %q", path)
		}
		if name, ok := strings.CutPrefix(path, repoPrefix); ok && len(name) > 256 {
			t.Fatalf("long name accepted: %q", path)
		}
	})
}
