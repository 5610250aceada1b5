package xenrestore

import "testing"

func TestParseTarget(t *testing.T) {
	good := map[string]Target{
		"xapi://pool.example/Local%20storage":           {"pool.example", "Local storage"},
		"xapi://10.0.0.1:443/2b7c0a4e-0000-4000-8000-1": {"10.0.0.1:443", "2b7c0a4e-0000-4000-8000-1"},
	}
	for in, want := range good {
		got, ok, err := ParseTarget(in)
		if err != nil || !ok || got != want {
			t.Errorf("ParseTarget(%q) = %+v, %v, %v; want %+v", in, got, ok, err, want)
		}
	}
	for _, in := range []string{"xapi://", "xapi://host", "xapi://host/", "xapi://host/a/b", "xapi://u:p@host/sr", "xapi://host/sr?x=1", "xapi://host/sr#f"} {
		if _, ok, err := ParseTarget(in); !ok || err == nil {
			t.Errorf("ParseTarget(%q) accepted", in)
		}
	}
	if _, ok, err := ParseTarget("/restore/web.img"); ok || err != nil {
		t.Errorf("a path was taken for a pool: %v %v", ok, err)
	}
}
