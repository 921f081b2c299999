package procinfo

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClean(t *testing.T) {
	const m = TruncationMarker
	tests := []struct {
		name     string
		in       string
		max      int
		cut      bool
		want     string
		wantFix  Fixes
		wantSame bool // the input string itself comes back
	}{
		{"valid ascii", "curl", 16, false, "curl", 0, true},
		{"valid multibyte", "wörker-€", 16, false, "wörker-€", 0, true},
		{"exactly the cap", "abcdefgh", 8, false, "abcdefgh", 0, true},
		{"empty", "", 8, false, "", 0, true},
		{"invalid byte", "a\xffb", 16, false, "a\uFFFDb", Sanitized, false},
		{"run of invalid bytes is one replacement", "\xff\xfe\xfd", 16, false, "\uFFFD", Sanitized, false},
		{"truncated surrogate half", "x\xed\xa0\x80y", 16, false, "x\uFFFDy", Sanitized, false},
		{"too long", "abcdefghij", 8, false, "abcde" + m, Truncated, false},
		{"cap inside a rune", "ab€€€", 9, false, "ab€" + m, Truncated, false},
		// 8 replacements and 8 a's are 32 bytes; 9 bytes may precede
		// the marker, and the third replacement would end at byte 11.
		{"replacement grows past the cap", strings.Repeat("\xffa", 8), 12, false, "\uFFFDa\uFFFDa" + m, Sanitized | Truncated, false},
		{"already cut, fits", "abc", 16, true, "abc" + m, Truncated, false},
		{"already cut inside a rune", "ab\xe2\x82", 16, true, "ab" + m, Truncated, false},
		{"already cut after an invalid byte", "ab\xff", 16, true, "ab\uFFFD" + m, Sanitized | Truncated, false},
		{"already cut at the cap", "abcdefgh", 8, true, "abcde" + m, Truncated, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, fix := Clean(tt.in, tt.max, tt.cut)
			if got != tt.want || fix != tt.wantFix {
				t.Errorf("Clean(%q, %d, %v) = %q, %b; want %q, %b", tt.in, tt.max, tt.cut, got, fix, tt.want, tt.wantFix)
			}
			if !utf8.ValidString(got) || len(got) > tt.max {
				t.Errorf("Clean(%q, %d, %v) = %q: invalid or over the cap", tt.in, tt.max, tt.cut, got)
			}
			if tt.wantSame {
				if n := testing.AllocsPerRun(100, func() { got, _ = Clean(tt.in, tt.max, false) }); n != 0 {
					t.Errorf("Clean of a valid string allocates %.0f times, want 0", n)
				}
			}
		})
	}
}

// FuzzClean checks Clean's promises against a simple model: the result is
// valid UTF-8 within the cap; it is the input when that already was; else
// it is a prefix of the input with invalid runs replaced, and it ends in the
// marker exactly when Truncated says so.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"", "abc", "a\xffb", "ab€€€", strings.Repeat("\xffa", 9), "x\xed\xa0\x80y", "ab\xe2\x82"} {
		f.Add(s, uint8(8), false)
		f.Add(s, uint8(4), true)
	}
	f.Fuzz(func(t *testing.T, s string, max uint8, cut bool) {
		maxBytes := len(TruncationMarker) + int(max)
		got, fix := Clean(s, maxBytes, cut)
		if !utf8.ValidString(got) || len(got) > maxBytes {
			t.Fatalf("Clean(%q, %d, %v) = %q: invalid or over the cap", s, maxBytes, cut, got)
		}
		if utf8.ValidString(s) && len(s) <= maxBytes && !cut {
			if got != s || fix != 0 {
				t.Fatalf("Clean(%q) = %q, %b: changed a valid string within its cap", s, got, fix)
			}
			return
		}
		if !cut && (fix&Sanitized != 0) == utf8.ValidString(s) {
			t.Fatalf("Clean(%q) = %q: Sanitized=%v for an input valid=%v", s, got, fix&Sanitized != 0, utf8.ValidString(s))
		}
		// Truncated exactly when the input was cut or is over the cap once
		// sanitized.
		if want := cut || len(strings.ToValidUTF8(s, "\uFFFD")) > maxBytes; (fix&Truncated != 0) != want {
			t.Fatalf("Clean(%q, %d, %v) = %q: Truncated=%v, want %v", s, maxBytes, cut, got, fix&Truncated != 0, want)
		}
		body := got
		if fix&Truncated != 0 {
			var ok bool
			if body, ok = strings.CutSuffix(got, TruncationMarker); !ok {
				t.Fatalf("Clean(%q) = %q: truncated without the marker", s, got)
			}
		}
		// body is a prefix of the sanitized input, less a rune that a cut
		// split (at most 3 bytes).
		for k := 0; k <= 3 && k <= len(s); k++ {
			if k > 0 && !cut {
				break
			}
			if strings.HasPrefix(strings.ToValidUTF8(s[:len(s)-k], "\uFFFD"), body) {
				return
			}
		}
		t.Fatalf("Clean(%q, %d, %v) = %q: not a prefix of the sanitized input", s, maxBytes, cut, got)
	})
}
