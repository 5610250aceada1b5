package vault

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestServeFlags(t *testing.T) {
	parse := func(args ...string) (*ServeConfig, error) {
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		c := ServeFlags(fs)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		return c, c.Validate()
	}
	c, err := parse("--listen", "127.0.0.1:8443", "--min-upload-rate", "64KiB/s", "--max-object-size", "256MiB", "--tenant-uploads", "2")
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Limits(); l.MinUploadRate != 64<<10 || l.MaxObjectSize != 256<<20 || l.TenantUploads != 2 || l.AuthCacheTTL.Seconds() != 2 {
		t.Fatalf("limits %+v", l)
	}
	for _, bad := range [][]string{
		{"--listen", ":8443"},
		{"--listen", "10.0.0.1:8443"},
		{"--listen", "[::1]:1", "--tls-key", "k"},
		{"--listen", "127.0.0.1:1", "--tenant-uploads", "0"},
		{"--listen", "127.0.0.1:1", "--max-object-size", "lots"},
		{"--listen", "127.0.0.1:1", "--min-upload-rate", "fast"},
		{"--listen", "nohost"},
		{"--listen", "127.0.0.1:1", "--max-conns", "1"},
		{"--listen", "127.0.0.1:1", "--max-conns", "100", "--max-unauth-conns", "100"},
		{"--listen", "127.0.0.1:1", "--header-timeout", "0s"},
		{"--listen", "127.0.0.1:1", "--body-timeout", "2h"},
		{"--listen", "127.0.0.1:1", "--idle-timeout", "1ms"},
	} {
		if _, err := parse(bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	c, err = parse("--listen", "127.0.0.1:1", "--max-conns", "100", "--header-timeout", "3s", "--body-timeout", "4s", "--idle-timeout", "5s")
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Limits().withDefaults(); l.MaxConns != 100 || l.MaxUnauthConns != 75 || l.HeaderTimeout != 3*time.Second ||
		l.BodyTimeout != 4*time.Second || l.IdleTimeout != 5*time.Second {
		t.Fatalf("connection limits %+v", l)
	}
	if _, err := parse("--listen", "127.0.0.1:1", "--max-conns", "10", "--max-unauth-conns", "10"); err == nil || !strings.Contains(err.Error(), "below --max-conns (10)") {
		t.Errorf("message %v", err)
	}
	if _, err := parse("--listen", ":8443"); !strings.Contains(err.Error(), "--allow-plain-http") {
		t.Errorf("message %v", err)
	}
	for _, ok := range [][]string{{"--listen", ":8443", "--allow-plain-http"}, {"--listen", ":8443", "--tls-cert", "c", "--tls-key", "k"},
		{"--listen", "localhost:80", "--min-upload-rate", "0"}} {
		if _, err := parse(ok...); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
}
