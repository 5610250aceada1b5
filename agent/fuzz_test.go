package agent

import (
	"testing"
)

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(exampleConfig))
	f.Add([]byte(nightly))
	f.Add([]byte("schedule: {cron: '@every 1h', timezone: America/New_York}\npools: [{url: u, password_file: p, include: ['a*']}]\n"))
	f.Add([]byte("bandwidth: {windows: [{from: '22:00', to: '06:00', days: fri-mon, limit: 1Gbit}]}\n"))
	f.Add([]byte("schedule: {cron: '*/5 1-3 * jan,feb sun'}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseConfig(b)
		if err != nil {
			return
		}
		p.NextRuns(monday, 3)
		p.Windows().Limits(monday)
		p.Pools = append(p.Pools, PoolSource{})
		for _, ps := range p.Pools {
			ps.SelectVMs([]VM{{Name: "a", UUID: "u", Tags: []string{"t"}}})
		}
	})
}

func FuzzParseHistory(f *testing.F) {
	good, _ := goodRecord(1).Marshal()
	f.Add([]byte("[" + string(good) + "]"))
	f.Add([]byte("[]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseHistory(b)
	})
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"20Mbit", "5MiB/s", "1.5GiB", "100mbps", "0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err == nil && (r < 0 || r > maxRate) {
			t.Fatalf("ParseRate(%q) = %d, out of range", s, r)
		}
	})
}
