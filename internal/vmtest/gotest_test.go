package vmtest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/tcpconnect/tcpconnect/internal/vmtest/guest"
)

func TestTestLogFailures(t *testing.T) {
	many := make([]string, 0, 100)
	for i := range 100 {
		many = append(many, fmt.Sprintf("line %d", i))
	}
	tests := []struct {
		name  string
		lines []string
		limit int
		want  []string
	}{
		{"a failed subtest's message, not its passing siblings' nor its parent's",
			[]string{
				"=== RUN   TestR",
				"    r_test.go:1: attach mode fentry",
				"=== RUN   TestR/ipv4",
				"    r_test.go:2: ipv4 fine",
				"=== RUN   TestR/ipv6",
				"    r_test.go:3: port 5: 2 records, want exactly 1",
				"        continued",
				"=== RUN   TestR/unix",
				"--- FAIL: TestR (1.00s)",
				"    --- PASS: TestR/ipv4 (0.10s)",
				"    --- FAIL: TestR/ipv6 (0.09s)",
				"    --- PASS: TestR/unix (0.01s)",
				"FAIL",
			}, 60,
			[]string{"--- FAIL: TestR/ipv6", "    r_test.go:3: port 5: 2 records, want exactly 1", "        continued", "FAIL"}},
		{"a test resumed by a NAME line",
			[]string{
				"=== RUN   TestA",
				"=== RUN   TestB",
				"=== NAME  TestA",
				"    a_test.go:9: boom",
				"--- FAIL: TestA (0.00s)",
				"--- PASS: TestB (0.00s)",
			}, 60,
			[]string{"--- FAIL: TestA", "    a_test.go:9: boom"}},
		{"a failed test without output is named",
			[]string{"=== RUN   TestC", "--- FAIL: TestC (0.00s)"}, 60,
			[]string{"--- FAIL: TestC (no output)"}},
		{"no failed test (a timeout): the last lines",
			append([]string{"=== RUN   TestD"}, many...), 3,
			[]string{"line 97", "line 98", "line 99"}},
		{"bounded",
			append(append([]string{"=== RUN   TestE"}, many...), "--- FAIL: TestE (0.00s)"), 2,
			[]string{"--- FAIL: TestE", "line 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLog()
			for _, line := range tt.lines {
				l.feed(line)
			}
			if got := l.failures(tt.limit); !slices.Equal(got, tt.want) {
				t.Errorf("failures = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestConsoleFailures checks that a failed command's result carries its
// failed tests' output, taken from the lines since the previous result.
func TestConsoleFailures(t *testing.T) {
	const n = "nonce1"
	c := newConsole(n)
	for _, line := range []string{
		"=== RUN   TestOld", "    old_test.go:1: from command a", "--- FAIL: TestOld (0.00s)",
		guest.FormatResult(n, guest.Result{Name: "a", Exit: 1}),
		"=== RUN   TestX", "    x_test.go:7: wrong", "--- FAIL: TestX (0.00s)",
		guest.FormatResult(n, guest.Result{Name: "b", Exit: 1}),
		"=== RUN   TestY", "--- PASS: TestY (0.00s)",
		guest.FormatResult(n, guest.Result{Name: "c"}),
		guest.FormatDone(n),
	} {
		c.feed(line)
	}
	results, _ := c.verdict([]guest.Command{{Name: "a"}, {Name: "b"}, {Name: "c"}}, nil)
	want := [][]string{
		{"--- FAIL: TestOld", "    old_test.go:1: from command a"},
		{"--- FAIL: TestX", "    x_test.go:7: wrong"},
		nil,
	}
	for i, r := range results {
		if !slices.Equal(r.Failures, want[i]) {
			t.Errorf("%s: Failures = %q, want %q", r.Name, r.Failures, want[i])
		}
	}
}
