package termtext

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Clean returns s with every character a terminal could act on replaced by
// a visible escape: C0 controls (tab and newline included), DEL and ESC as
// \xNN; C1 controls, bidirectional embeddings, overrides and isolates, and
// the line and paragraph separators as \uNNNN; each byte of invalid UTF-8
// as U+FFFD. Everything else, including other non-ASCII text, is kept, so a
// clean string comes back unchanged.
func Clean(s string) string {
	return clean(s, false)
}

// CleanLines is Clean that keeps newlines: for multi-line messages such as
// joined errors. A carriage return is still escaped, so no line can
// overwrite another.
func CleanLines(s string) string {
	return clean(s, true)
}

func clean(s string, keepNewline bool) string {
	if isClean(s, keepNewline) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteRune(utf8.RuneError)
		case r == '\n' && keepNewline:
			b.WriteByte('\n')
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// isClean reports whether clean would return s unchanged, without
// allocating: the common case.
func isClean(s string, keepNewline bool) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if (c < 0x20 && !(c == '\n' && keepNewline)) || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size <= 1) || unsafeRune(r) {
			return false
		}
		i += size
	}
	return true
}

// unsafeRune reports the non-ASCII runes Clean escapes: C1 controls (a
// terminal may take U+009B as CSI), the bidirectional formatting characters
// (Trojan Source, CVE-2021-42574) and the line and paragraph separators.
func unsafeRune(r rune) bool {
	switch {
	case r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c, r == 0x200e, r == 0x200f: // ALM, LRM, RLM
		return true
	case r >= 0x202a && r <= 0x202e: // LRE, RLE, PDF, LRO, RLO
		return true
	case r >= 0x2066 && r <= 0x2069: // LRI, RLI, FSI, PDI
		return true
	case r == 0x2028, r == 0x2029:
		return true
	}
	return false
}

// Clip is Clean for a short field another party wrote (a key slot's host or
// note, a name): cleaned, then cut to at most n characters of the cleaned
// text, with "…" marking the cut.
func Clip(s string, n int) string {
	c := Clean(s)
	if utf8.RuneCountInString(c) <= n {
		return c
	}
	return string([]rune(c)[:n]) + "…"
}
