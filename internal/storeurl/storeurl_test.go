package storeurl_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/storeurl"
)

func TestParseURL(t *testing.T) {
	s3 := func(endpoint, bucket, prefix, region string, secure bool) storeurl.Target {
		return storeurl.Target{S3: &store.S3Config{Endpoint: endpoint, Bucket: bucket, Prefix: prefix, Region: region, Secure: secure}}
	}
	good := []struct {
		raw  string
		want storeurl.Target
	}{
		{"file:///srv/backup", storeurl.Target{Dir: "/srv/backup"}},
		{"file://localhost/srv/backup/", storeurl.Target{Dir: "/srv/backup"}},
		{"/srv/backup", storeurl.Target{Dir: "/srv/backup"}},
		{"relative/dir", storeurl.Target{Dir: "relative/dir"}},
		{"./x:y", storeurl.Target{Dir: "x:y"}},
		{"s3://s3.example.com/bucket", s3("s3.example.com", "bucket", "", "", true)},
		{"s3://s3.example.com/bucket/", s3("s3.example.com", "bucket", "", "", true)},
		{"s3://127.0.0.1:9000/bkt/laptop/home?tls=false", s3("127.0.0.1:9000", "bkt", "laptop/home", "", false)},
		{"s3://h:443/bkt/P_re.fix-1?region=eu-west-1&tls=true", s3("h:443", "bkt", "P_re.fix-1", "eu-west-1", true)},
		{"S3://[::1]:9000/b1c/p/", s3("[::1]:9000", "b1c", "p", "", true)},
	}
	for _, c := range good {
		got, err := storeurl.Parse(c.raw)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.raw, err)
			continue
		}
		if got.Dir != c.want.Dir || (got.S3 == nil) != (c.want.S3 == nil) ||
			(got.S3 != nil && *got.S3 != *c.want.S3) {
			t.Errorf("Parse(%q) = %+v %+v; want %+v %+v", c.raw, got, got.S3, c.want, c.want.S3)
		}
	}
	bad := []struct{ raw, msg string }{
		{"", "empty repository URL"},
		{"sftp://host/dir", `unsupported repository URL scheme "sftp": use file:///dir, s3://host:port/bucket/prefix`},
		{"http://host/bucket", "plain http is allowed only on a loopback address"},
		{"s3:bucket/prefix", "malformed repository URL"},
		{"file:/abs", "malformed repository URL"},
		{"file://relative/dir", "three slashes"},
		{"file:///a?x=1", "no query"},
		{"s3:///bucket", "needs a host"},
		{"s3://host", "needs a bucket"},
		{"s3://host/", "needs a bucket"},
		{"s3://host/Bad_Bucket", "invalid bucket name"},
		{"s3://host:0/b", "invalid port"},
		{"s3://host:99999/b", "invalid port"},
		{"s3://host/bkt/a//c", "invalid key prefix"},
		{"s3://host/bkt/a/../c", "invalid key prefix"},
		{"s3://host/bkt/a%20c", "invalid key prefix"},
		{"s3://host/bkt?tls=maybe", "tls="},
		{"s3://host/bkt?region=", "empty region"},
		{"s3://host/bkt?secure=false", `unknown parameter "secure"`},
		{"s3://host/bkt?tls=false&tls=true", "given 2 times"},
		{"s3://host/b#frag", "fragment"},
		{"s3://AKIAKEY:topsecret@host/b", "secrets never go in argv or URLs"},
		{"s3://AKIAKEY@host/b", "secrets never go in argv or URLs"},
		{"file://user:topsecret@/srv", "secrets never go in argv or URLs"},
		{"s3://AKIAKEY:topsecret@host:bad/b", "invalid repository URL"},
	}
	for _, c := range bad {
		_, err := storeurl.Parse(c.raw)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("Parse(%q) = %v; want an error containing %q", c.raw, err, c.msg)
			continue
		}
		if strings.Contains(err.Error(), "topsecret") {
			t.Errorf("Parse(%q) error repeats the secret: %v", c.raw, err)
		}
	}
}

func TestOpenURLs(t *testing.T) {
	dir := t.TempDir()
	for _, raw := range []string{"file://" + dir, dir} {
		s, err := storeurl.OpenProvider(t.Context(), raw, storeurl.Options{Create: false})
		if err != nil {
			t.Fatalf("Open(%q): %v", raw, err)
		}
		if _, ok := s.(*store.Local); !ok || s.Location() != "file://"+dir {
			t.Errorf("Open(%q) = %T at %s; want *store.Local at file://%s", raw, s, s.Location(), dir)
		}
	}
	if _, err := storeurl.OpenProvider(t.Context(), "file://"+dir+"/missing", storeurl.Options{Create: false}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Open of a missing directory = %v; want ErrNotFound", err)
	}
	if _, err := storeurl.OpenProvider(t.Context(), "ftp://x/y", storeurl.Options{Create: false}); err == nil {
		t.Error("Open of an ftp URL succeeded")
	}
	t.Setenv(storeurl.EnvAccessKey, "")
	t.Setenv(storeurl.EnvSecretKey, "")
	_, err := storeurl.OpenProvider(t.Context(), "s3://127.0.0.1:1/bucket/p?tls=false", storeurl.Options{Create: false})
	if !errors.Is(err, store.ErrDenied) || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
		t.Errorf("Open of S3 without credentials = %v; want ErrDenied naming the variables", err)
	}
}

func TestParseVaultURL(t *testing.T) {
	good := map[string]string{
		"https://vault.example.com":          "https://vault.example.com",
		"https://vault.example.com:8443/":    "https://vault.example.com:8443",
		"https://Vault.example.com/base/v2/": "https://vault.example.com/base/v2",
		"http://127.0.0.1:9000":              "http://127.0.0.1:9000",
		"http://localhost:9000/x":            "http://localhost:9000/x",
		"http://[::1]:9000":                  "http://[::1]:9000",
	}
	for raw, want := range good {
		tg, err := storeurl.Parse(raw)
		if err != nil || tg.Vault == nil || tg.Vault.String() != want {
			t.Errorf("Parse(%q) = %+v, %v; want vault %s", raw, tg, err, want)
		}
	}
	bad := map[string]string{
		"http://vault.example.com":          "clear text",
		"http://10.0.0.1:80":                "clear text",
		"https://user:pw@vault.example.com": "credentials",
		"https://vault.example.com?x=1":     "no query",
		"https://vault.example.com/#frag":   "fragment",
		"https://vault.example.com:99999":   "port",
		"https://vault.example.com/a/../b":  "segment",
		"https://vault.example.com/a%20b":   "base path",
		"https:///nohost":                   "host",
		"https:vault":                       "malformed",
	}
	for raw, want := range bad {
		_, err := storeurl.Parse(raw)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v; want an error mentioning %q", raw, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("Parse(%q) error repeats the password: %v", raw, err)
		}
	}
}
