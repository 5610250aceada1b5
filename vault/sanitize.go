package vault

import (
	"fmt"
	"strings"

	"github.com/cofferhq/coffer/internal/store"
)

const (
	// maxPathLen bounds the request path (without the query).
	maxPathLen = 512
	// maxURILen bounds the whole request target; longer ones get 414.
	maxURILen = 8 << 10
	// repoPrefix is the object route; the rest of the path is the name.
	repoPrefix = "/v1/repo/"
)

// errURITooLong is returned by sanitizePath for request targets above maxURILen.
var errURITooLong = fmt.Errorf("request target longer than %d bytes", maxURILen)

// sanitizePath checks a raw request target (r.RequestURI, never the decoded
// URL) and splits it into path and raw query. It runs before any routing, so
// no cleaned or decoded form of a hostile path ever reaches a handler.
//
// Accepted paths start with "/", contain only [A-Za-z0-9._/-] (names never
// need percent-encoding, so "%" is refused outright; upper case passes here so
// the object grammar can name the precise problem), have no empty segment and
// no segment starting with ".", are at most 512 bytes, and an object name
// after /v1/repo/ is at most store.MaxNameLen bytes.
func sanitizePath(uri string) (path, rawQuery string, err error) {
	if len(uri) > maxURILen {
		return "", "", errURITooLong
	}
	if uri == "" || uri[0] != '/' {
		return "", "", fmt.Errorf("the request target must be an absolute path (origin form)")
	}
	path, rawQuery, _ = strings.Cut(uri, "?")
	if len(path) > maxPathLen {
		return "", "", fmt.Errorf("path longer than %d bytes", maxPathLen)
	}
	if strings.ContainsRune(rawQuery, '#') {
		return "", "", fmt.Errorf("fragment in request target")
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '/') {
			if c == '%' {
				return "", "", fmt.Errorf("percent-encoding is not allowed in paths (byte %d)", i)
			}
			return "", "", fmt.Errorf("byte 0x%02x at offset %d is not allowed", c, i)
		}
	}
	if path == "/" {
		return path, rawQuery, nil
	}
	for _, seg := range strings.Split(path[1:], "/") {
		if seg == "" {
			return "", "", fmt.Errorf("empty path segment")
		}
		if seg[0] == '.' {
			return "", "", fmt.Errorf("path segment starting with a dot")
		}
	}
	if name, ok := strings.CutPrefix(path, repoPrefix); ok && len(name) > store.MaxNameLen {
		return "", "", fmt.Errorf("object name longer than %d bytes", store.MaxNameLen)
	}
	return path, rawQuery, nil
}
