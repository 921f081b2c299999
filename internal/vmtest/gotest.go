package vmtest

import (
	"regexp"
	"slices"
	"strings"
)

// MaxFailureLines bounds CommandResult.Failures.
const MaxFailureLines = 60

// goTestHeader matches the lines "go test -v" prints when a test starts or
// resumes ("=== RUN   TestA/b", "=== NAME  TestA", "=== CONT  TestA"):
// the output that follows is that test's.
var goTestHeader = regexp.MustCompile(`^=== (?:RUN|CONT|NAME|PAUSE)\s+(\S+)`)

// goTestAnyVerdict matches a test's verdict line at any depth (subtests are
// indented four spaces per level).
var goTestAnyVerdict = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(`)

// testLog gathers one command's "go test -v" output by test, so that the
// output of the tests that failed can be shown on its own: in the console
// it sits among the passing tests' lines, far from the verdict lines that
// name the failure, and a CI log keeps only its tail.
type testLog struct {
	cur    string              // the test whose output the next line is
	lines  map[string][]string // output lines by test ("": outside any test)
	order  []string            // tests in the order their output began
	failed map[string]bool     // tests whose verdict was FAIL
	all    []string            // every line, for output with no failing test
}

func newTestLog() *testLog {
	return &testLog{lines: map[string][]string{}, failed: map[string]bool{}}
}

// feed adds one line of output.
func (l *testLog) feed(line string) {
	l.all = append(l.all, line)
	if m := goTestHeader.FindStringSubmatch(line); m != nil {
		l.cur = m[1]
		return
	}
	if m := goTestAnyVerdict.FindStringSubmatch(line); m != nil {
		if m[1] == "FAIL" {
			l.failed[m[2]] = true
		}
		if !strings.HasPrefix(line, " ") {
			l.cur = "" // a top-level test ended: what follows is no test's
		}
		return
	}
	if _, ok := l.lines[l.cur]; !ok {
		l.order = append(l.order, l.cur)
	}
	l.lines[l.cur] = append(l.lines[l.cur], line)
}

// failures returns the output of the innermost failed tests (a failed test
// none of whose subtests failed), each after a "--- FAIL: name" line, then
// what was printed outside any test (a panic's trace, a timeout); with no
// failed test, the command's last lines. At most limit lines.
func (l *testLog) failures(limit int) []string {
	var out []string
	add := func(s ...string) {
		for _, line := range s {
			if len(out) < limit {
				out = append(out, line)
			}
		}
	}
	leaf := func(name string) bool {
		for f := range l.failed {
			if strings.HasPrefix(f, name+"/") {
				return false
			}
		}
		return true
	}
	for _, name := range l.order {
		if name != "" && l.failed[name] && leaf(name) {
			add("--- FAIL: " + name)
			add(l.lines[name]...)
		}
	}
	var silent []string
	for name := range l.failed {
		if leaf(name) && len(l.lines[name]) == 0 {
			silent = append(silent, name)
		}
	}
	slices.Sort(silent)
	for _, name := range silent {
		add("--- FAIL: " + name + " (no output)")
	}
	if len(l.failed) == 0 {
		add(l.all[max(0, len(l.all)-limit):]...)
		return out
	}
	add(l.lines[""]...)
	return out
}
