package maint

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy(strings.Fields("--keep-last 7 --keep-daily 14 --keep-weekly 8 --keep-monthly 12 --keep-yearly 3 --keep-within 30d --keep-hourly=2"))
	if err != nil {
		t.Fatal(err)
	}
	want := Policy{Last: 7, Within: 30 * 24 * time.Hour, Hourly: 2, Daily: 14, Weekly: 8, Monthly: 12, Yearly: 3}
	if p != want {
		t.Fatalf("got %+v, want %+v", p, want)
	}
	if back, err := ParsePolicy(strings.Fields(p.String())); err != nil || back != p {
		t.Fatalf("String %q parses back as %+v, %v", p, back, err)
	}
}

func TestParsePolicyRefuses(t *testing.T) {
	cases := map[string]string{
		"":                                    "keeps nothing",
		"--keep-last 0":                       "keeps nothing",
		"--keep-daily -1":                     "--keep-daily -1 is negative",
		"--keep-hourly 1000001":               "more than 1000000",
		"--keep-within 2x":                    "not a duration",
		"--keep-within -3h":                   "out of range",
		"--keep-within 40000d":                "at most",
		"--keep-daily 7 web01":                `unexpected argument "web01"`,
		"--keep-fortnightly 2":                "unknown flag",
		"--keep-last seven":                   "invalid argument",
		"--keep-within 99999999999999999999d": "not a duration",
	}
	for args, want := range cases {
		_, err := ParsePolicy(strings.Fields(args))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParsePolicy(%q) = %v, want an error with %q", args, err, want)
		}
	}
	if _, err := ParsePolicy(nil); !errors.Is(err, ErrKeepsNothing) {
		t.Errorf("an empty policy: %v, want ErrKeepsNothing", err)
	}
}

func TestPoliciesJSON(t *testing.T) {
	ps := Policies{
		Default:  Policy{Last: 7, Daily: 14, Weekly: 8, Monthly: 12, Yearly: 3},
		PerGroup: map[string]Policy{"db01": {Within: 36 * time.Hour, Daily: 30}},
	}
	b, err := json.Marshal(ps)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"default":{"last":7,"daily":14,"weekly":8,"monthly":12,"yearly":3},"per_group":{"db01":{"within":"36h0m0s","daily":30}}}`
	if string(b) != want {
		t.Fatalf("got %s\nwant %s", b, want)
	}
	back, err := DecodePolicies(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.Default != ps.Default || back.PerGroup["db01"] != ps.PerGroup["db01"] || len(back.PerGroup) != 1 {
		t.Fatalf("round trip: %+v", back)
	}
	if back.For("db01").Daily != 30 || back.For("web01") != ps.Default {
		t.Fatalf("For: %+v %+v", back.For("db01"), back.For("web01"))
	}
}

func TestDecodePoliciesRefuses(t *testing.T) {
	cases := map[string]string{
		`{}`:                                                         "default retention policy: the retention policy keeps nothing",
		`{"default":{"last":1}} {}`:                                  "data after",
		`{"default":{"last":1,"hours":2}}`:                           "unknown field",
		`{"default":{"last":1},"x":1}`:                               "unknown field",
		`{"default":{"within":"forever"}}`:                           "not a duration",
		`{"default":{"last":-4}}`:                                    "negative",
		`{"default":{"last":1},"per_group":{"db":{}}}`:               `policy of VM "db": the retention policy keeps nothing`,
		`{"default":{"last":1},"per_group":{" ":{"last":1}}}`:        "names no VM",
		`{"default":{"last":1},"per_group":{"a\u0000b":{"last":1}}}`: "not printable",
		`{"default":{"last":1},"per_group":{"` + strings.Repeat("v", 300) + `":{"last":1}}}`: "longer than 255",
		`[1]`:                      "not valid JSON",
		`{"default":{"last":1.5}}`: "not valid JSON",
	}
	for in, want := range cases {
		if _, err := DecodePolicies([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodePolicies(%.60s) = %v, want an error with %q", in, err, want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute, "0d": 0} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "-1d", "1.5d", "1y", "w"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) passes", in)
		}
	}
}

func FuzzParsePolicy(f *testing.F) {
	for _, s := range []string{"--keep-last 7 --keep-daily 14", "--keep-within 30d", "--keep-within=2w --keep-yearly 3", "--keep-hourly -1", "x", "--keep-within 1e3h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePolicy(strings.Fields(s))
		if err != nil {
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("ParsePolicy passed an invalid policy %+v: %v", p, err)
		}
		if back, err := ParsePolicy(strings.Fields(p.String())); err != nil || back != p {
			t.Fatalf("%q: %+v prints as %q, which parses as %+v, %v", s, p, p, back, err)
		}
	})
}

func FuzzDecodePolicies(f *testing.F) {
	for _, s := range []string{
		`{"default":{"last":7,"daily":14}}`,
		`{"default":{"within":"30d"},"per_group":{"db01":{"weekly":8}}}`,
		`{"default":{"last":1}} x`, `{"default":{"within":"9999999h"}}`, `null`, `{"default":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := DecodePolicies(b)
		if err != nil {
			return
		}
		if err := ps.Validate(); err != nil {
			t.Fatalf("decoded invalid policies: %v", err)
		}
		enc, err := json.Marshal(ps)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodePolicies(enc)
		if err != nil {
			t.Fatalf("re-encoded %s does not decode: %v", enc, err)
		}
		if back.Default != ps.Default || len(back.PerGroup) != len(ps.PerGroup) {
			t.Fatalf("round trip %+v -> %+v", ps, back)
		}
	})
}
