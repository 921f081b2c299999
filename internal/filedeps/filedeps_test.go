package filedeps

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestCycles: the test package's two cycles are found, with the names that
// close them, and the file that only uses others is in none.
func TestCycles(t *testing.T) {
	u, err := Load("testdata/cycle", ".")
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"a.go", "b.go"}, {"d.go", "e.go"}}
	if got := u.Cycles(); !reflect.DeepEqual(got, want) {
		t.Errorf("cycles %q, want %q (uses %v)", got, want, u)
	}
	for _, tt := range []struct {
		from, to string
		names    []string
	}{
		{"a.go", "b.go", []string{"V"}},
		{"b.go", "a.go", []string{"T", "M", "F"}},
		{"c.go", "a.go", []string{"T"}},
		{"e.go", "d.go", []string{"one"}},
	} {
		if got := u[tt.from][tt.to]; !reflect.DeepEqual(got, tt.names) {
			t.Errorf("%s uses of %s: %q, want %q", tt.from, tt.to, got, tt.names)
		}
	}
}

// TestReceiverFilesOneWay: the receiver's files use each other one way
// (tcpconnectreceiver/doc.go lists them by job, from the lifecycle down to
// record building). A failure names the files of each cycle and what each
// uses of the others: move what closes the cycle to the file below.
func TestReceiverFilesOneWay(t *testing.T) {
	u, err := Load("../../tcpconnectreceiver", ".")
	if err != nil {
		t.Fatal(err)
	}
	if len(u) < 20 {
		t.Fatalf("%d files read, want the receiver's", len(u))
	}
	for _, c := range u.Cycles() {
		var b strings.Builder
		for _, from := range c {
			for _, to := range c {
				if names := u[from][to]; len(names) > 0 {
					fmt.Fprintf(&b, "\n  %s -> %s: %s", from, to, strings.Join(names, " "))
				}
			}
		}
		t.Errorf("files that use each other: %s%s", strings.Join(c, ", "), b.String())
	}
}
