package procinfo

import (
	"strings"
	"unicode/utf8"
)

// Caps of the strings an Info carries (bytes, after Clean). Each is the
// kernel's own bound on the value, so only a value that did not come from
// the kernel (a crafted /etc/passwd, a procfs look-alike) is ever cut.
const (
	// DefaultMaxCommandLineBytes is the default cap of Info.CommandLine.
	DefaultMaxCommandLineBytes = 4096
	// MaxExePathBytes caps Info.ExePath: PATH_MAX.
	MaxExePathBytes = 4096
	// MaxExeNameBytes caps Info.ExeName: NAME_MAX.
	MaxExeNameBytes = 255
	// MaxOwnerBytes caps Info.Owner: LOGIN_NAME_MAX.
	MaxOwnerBytes = 256
)

// TruncationMarker ends every string that Clean cut to its cap.
const TruncationMarker = "…"

// Fixes says what Clean changed in a string.
type Fixes uint8

// The changes Clean makes.
const (
	// Sanitized: invalid UTF-8 was replaced by U+FFFD.
	Sanitized Fixes = 1 << iota
	// Truncated: the string was cut to its cap and ends in TruncationMarker.
	Truncated
)

// Clean returns s as valid UTF-8 of at most maxBytes bytes. Each run of
// invalid bytes becomes one U+FFFD (as strings.ToValidUTF8 does), and a
// string longer than maxBytes is cut on a rune boundary and ends in
// TruncationMarker. cut says that s is already a prefix of a longer value (it
// was read up to a bound): a rune that the bound split is dropped, and the
// result is marked as truncated even when it fits. maxBytes must be at least
// len(TruncationMarker).
//
// A valid string within its cap is returned as it is: checking it costs no
// allocation.
func Clean(s string, maxBytes int, cut bool) (string, Fixes) {
	var f Fixes
	if cut {
		s = dropSplitRune(s)
		f |= Truncated
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, string(utf8.RuneError))
		f |= Sanitized
	}
	if len(s) > maxBytes || cut {
		f |= Truncated
		keep := max(maxBytes-len(TruncationMarker), 0)
		if keep < len(s) {
			for keep > 0 && !utf8.RuneStart(s[keep]) {
				keep--
			}
			s = s[:keep]
		}
		s += TruncationMarker
	}
	return s, f
}

// dropSplitRune removes an incomplete UTF-8 sequence at the end of s (the
// start of a rune whose other bytes were cut off).
func dropSplitRune(s string) string {
	for i := len(s) - 1; i >= 0 && i > len(s)-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				return s[:i]
			}
			return s
		}
	}
	return s
}
