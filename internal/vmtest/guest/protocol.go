// Package guest holds what the VM test host and the guest /init agree on: the
// plan file the host puts into the initramfs and the marker lines the guest
// prints on the serial console.
//
// Every marker line carries the run's nonce, so output that a test prints by
// chance (or a stale line) is never taken for a result.
package guest

import (
	"fmt"
	"strconv"
	"strings"
)

// PlanPath is where the host puts the guest plan inside the initramfs.
const PlanPath = "/vmtest/plan.json"

// Marker prefixes of the lines the guest prints.
const (
	// ResultMarker starts one line per command:
	// "VMTEST-RESULT nonce=N name=NAME exit=CODE seconds=S".
	ResultMarker = "VMTEST-RESULT"
	// DoneMarker starts the last line, printed when every command ran:
	// "VMTEST-DONE nonce=N".
	DoneMarker = "VMTEST-DONE"
	// ErrorMarker starts a line that reports a setup failure in the guest:
	// "VMTEST-ERROR nonce=N message".
	ErrorMarker = "VMTEST-ERROR"
)

// Plan is what the guest /init reads from PlanPath.
type Plan struct {
	// Nonce is a random token echoed in every marker line.
	Nonce string `json:"nonce"`
	// Kernel is the short kernel name ("6.1"), exported to commands as VMTEST_KERNEL.
	Kernel string `json:"kernel"`
	// BusyboxInstall asks the guest to link busybox's applets into the
	// standard folders (busybox --install -s) before anything else runs: the
	// host cannot list the applets of a busybox built for another machine.
	BusyboxInstall bool `json:"busybox_install,omitempty"`
	// Modules are paths of uncompressed kernel modules, loaded in this order.
	Modules []string `json:"modules,omitempty"`
	// Env applies to every command (after the guest's defaults).
	Env map[string]string `json:"env,omitempty"`
	// Commands run one after another.
	Commands []Command `json:"commands"`
}

// Command is one program run in the guest.
type Command struct {
	// Name identifies the command in result lines; see ValidName.
	Name string `json:"name"`
	// Args is the argument vector; Args[0] is an absolute path in the guest.
	Args []string `json:"args"`
	// Env is added to the plan's Env for this command only.
	Env map[string]string `json:"env,omitempty"`
	// Dir is the working directory; "/" when empty.
	Dir string `json:"dir,omitempty"`
	// WantTests, for a Go test binary run with -test.v, are the top-level
	// tests that must each print "--- PASS: NAME": the host fails the
	// command when one is missing or skipped, so a run that selected no
	// test cannot pass. The guest ignores it.
	WantTests []string `json:"want_tests,omitempty"`
}

// ValidName reports whether name may be used as a command name: non-empty and
// made only of letters, digits and . _ - / : + , characters.
func ValidName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("._-/:+,", r):
		default:
			return false
		}
	}
	return true
}

// Result is one command's outcome as reported by the guest.
type Result struct {
	Name    string
	Exit    int
	Seconds float64
}

// FormatResult returns the result line for r (without a newline).
func FormatResult(nonce string, r Result) string {
	return fmt.Sprintf("%s nonce=%s name=%s exit=%d seconds=%.2f", ResultMarker, nonce, r.Name, r.Exit, r.Seconds)
}

// FormatDone returns the final line (without a newline).
func FormatDone(nonce string) string {
	return fmt.Sprintf("%s nonce=%s", DoneMarker, nonce)
}

// FormatError returns a setup-error line (without a newline).
func FormatError(nonce, msg string) string {
	return fmt.Sprintf("%s nonce=%s %s", ErrorMarker, nonce, strings.ReplaceAll(msg, "\n", " "))
}

// Line is a parsed marker line.
type Line struct {
	// Kind is ResultMarker, DoneMarker or ErrorMarker.
	Kind string
	// Result is set when Kind is ResultMarker.
	Result Result
	// Message is set when Kind is ErrorMarker.
	Message string
}

// ParseLine looks for a marker with the given nonce in one console line. The
// marker may follow other text on the same line (a test's last output without
// a newline, or kernel messages). It returns ok=false for lines without a
// marker or with another nonce, and an error for a marker line with this nonce
// that is malformed.
func ParseLine(nonce, line string) (l Line, ok bool, err error) {
	line = strings.TrimRight(line, "\r\n")
	for _, kind := range []string{ResultMarker, DoneMarker, ErrorMarker} {
		i := strings.Index(line, kind+" nonce="+nonce)
		if i < 0 {
			continue
		}
		rest := line[i+len(kind)+len(" nonce=")+len(nonce):]
		if rest != "" && rest[0] != ' ' {
			continue // a longer nonce that merely starts with ours
		}
		rest = strings.TrimPrefix(rest, " ")
		switch kind {
		case DoneMarker:
			return Line{Kind: kind}, true, nil
		case ErrorMarker:
			return Line{Kind: kind, Message: rest}, true, nil
		}
		r, err := parseResult(rest)
		if err != nil {
			return Line{}, true, fmt.Errorf("malformed result line %q: %w", line[i:], err)
		}
		return Line{Kind: kind, Result: r}, true, nil
	}
	return Line{}, false, nil
}

func parseResult(fields string) (Result, error) {
	var (
		r    Result
		seen = map[string]bool{}
	)
	for f := range strings.FieldsSeq(fields) {
		k, v, found := strings.Cut(f, "=")
		if !found {
			return Result{}, fmt.Errorf("field %q has no '='", f)
		}
		var err error
		switch k {
		case "name":
			if !ValidName(v) {
				err = fmt.Errorf("invalid name %q", v)
			}
			r.Name = v
		case "exit":
			r.Exit, err = strconv.Atoi(v)
		case "seconds":
			r.Seconds, err = strconv.ParseFloat(v, 64)
		default:
			err = fmt.Errorf("unknown field %q", k)
		}
		if err != nil {
			return Result{}, fmt.Errorf("field %s: %w", k, err)
		}
		seen[k] = true
	}
	for _, k := range []string{"name", "exit", "seconds"} {
		if !seen[k] {
			return Result{}, fmt.Errorf("missing field %s", k)
		}
	}
	return r, nil
}
