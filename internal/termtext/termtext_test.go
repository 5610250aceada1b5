package termtext

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClean(t *testing.T) {
	cases := []struct{ in, want string }{
		{"web01", "web01"},
		{"", ""},
		{"Zürich-datacenter ü 日本", "Zürich-datacenter ü 日本"},
		{"a\x1b[2Jb", `a\x1b[2Jb`},
		{"title\x1b]0;pwned\x07", `title\x1b]0;pwned\x07`},
		{"tab\there", `tab\x09here`},
		{"line\nbreak\r", `line\x0abreak\x0d`},
		{"nul\x00del\x7f", `nul\x00del\x7f`},
		{"c1 \u009b31m csi", `c1 \u009b31m csi`},
		{"evil\u202egnp.exe", `evil\u202egnp.exe`},
		{"iso\u2066x\u2069", `iso\u2066x\u2069`},
		{"mark\u200f", `mark\u200f`},
		{"sep\u2028x", `sep\u2028x`},
		{"bad\xffutf8\xc3", "bad\uFFFDutf8\uFFFD"},
		{`back\slash`, `back\slash`},
	}
	for _, c := range cases {
		if got := Clean(c.in); got != c.want {
			t.Errorf("Clean(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestCleanLinesKeepsOnlyNewlines(t *testing.T) {
	in := "first\nsecond\r\x1b[1Athird"
	want := "first\nsecond\\x0d\\x1b[1Athird"
	if got := CleanLines(in); got != want {
		t.Errorf("CleanLines(%q) = %q, want %q", in, got, want)
	}
}

// checkSafe fails when out holds anything a terminal could act on.
func checkSafe(t *testing.T, in, out string, keepNewline bool) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("Clean(%q) = %q: invalid UTF-8", in, out)
	}
	for _, r := range out {
		if (r < 0x20 && !(r == '\n' && keepNewline)) || r == 0x7f || unsafeRune(r) {
			t.Fatalf("Clean(%q) = %q: still holds %U", in, out, r)
		}
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"web01", "a\x1b[31mred", "\u202e", "\xff\xfe", "x\u009by", "日本\n\r\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := Clean(s)
		checkSafe(t, s, out, false)
		lines := CleanLines(s)
		checkSafe(t, s, lines, true)
		if strings.Count(lines, "\n") != strings.Count(s, "\n") {
			t.Fatalf("CleanLines(%q) = %q: newlines changed", s, lines)
		}
		if Clean(out) != out {
			t.Fatalf("Clean is not idempotent on %q", s)
		}
		if isClean(s, false) && out != s {
			t.Fatalf("Clean changed the clean string %q to %q", s, out)
		}
	})
}

// TestClip: fields another party wrote cannot move the cursor, clear the
// screen or forge lines, and are bounded.
func TestClip(t *testing.T) {
	for in, want := range map[string]string{
		"web01":                    "web01",
		"evil\x1b[2J\nforged line": `evil\x1b[2J\x0aforged line`,
		"bad\xffutf8\u202eRTL":     "bad\ufffdutf8\\u202eRTL",
		strings.Repeat("é", 100):   strings.Repeat("é", 80) + "…",
	} {
		if got := Clip(in, 80); got != want {
			t.Errorf("Clip(%q) = %q, want %q", in, got, want)
		}
	}
}
