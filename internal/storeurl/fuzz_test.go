package storeurl_test

import (
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/storeurl"
)

// FuzzParse: a repository URL comes from a config file, the environment or
// argv. Parse never panics, a URL it accepts names exactly one kind of
// store, and an error never repeats a password from the URL's user-info.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"file:///srv/backup", "relative/dir", "s3://minio:9000/bucket/prefix?tls=false&region=eu",
		"https://vault.example.com:8443", "http://127.0.0.1:8080/base", "s3://key:supersecretpw@host/b",
		"https://user:hunter2hunter2@vault", "file://host/x", "s3:/x", "ftp://x", "s3://h/b#frag", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tg, err := storeurl.Parse(raw)
		if err == nil {
			kinds := 0
			for _, set := range []bool{tg.Dir != "", tg.S3 != nil, tg.Vault != nil} {
				if set {
					kinds++
				}
			}
			if kinds != 1 {
				t.Fatalf("Parse(%q) accepted a URL naming %d kinds of store: %+v", raw, kinds, tg)
			}
			if tg.S3 != nil && tg.S3.Bucket == "" {
				t.Fatalf("Parse(%q) accepted an S3 URL without a bucket", raw)
			}
			return
		}
		scheme, rest, ok := strings.Cut(raw, "://")
		if !ok {
			return
		}
		at := strings.Index(rest, "@")
		if at <= 0 {
			return
		}
		_, pw, ok := strings.Cut(rest[:at], ":")
		if !ok || len(pw) < 8 || strings.Contains(scheme+rest[at:], pw) {
			return
		}
		if strings.Contains(err.Error(), pw) {
			t.Fatalf("Parse(%q) error repeats the password: %v", raw, err)
		}
	})
}
