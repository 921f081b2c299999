package guest

import (
	"strings"
	"testing"
)

func TestParseLine(t *testing.T) {
	const nonce = "abc123"
	tests := []struct {
		name    string
		line    string
		wantOK  bool
		wantErr string
		want    Line
	}{
		{name: "result", line: "VMTEST-RESULT nonce=abc123 name=bpf.test/lsm exit=0 seconds=1.25",
			wantOK: true, want: Line{Kind: ResultMarker, Result: Result{Name: "bpf.test/lsm", Seconds: 1.25}}},
		{name: "result after output without newline", line: "PASSVMTEST-RESULT nonce=abc123 name=x exit=2 seconds=0.10\r",
			wantOK: true, want: Line{Kind: ResultMarker, Result: Result{Name: "x", Exit: 2, Seconds: 0.1}}},
		{name: "done", line: "VMTEST-DONE nonce=abc123", wantOK: true, want: Line{Kind: DoneMarker}},
		{name: "error", line: "VMTEST-ERROR nonce=abc123 load module veth: ENOENT", wantOK: true,
			want: Line{Kind: ErrorMarker, Message: "load module veth: ENOENT"}},
		{name: "plain output", line: "=== RUN TestX"},
		{name: "other nonce", line: "VMTEST-RESULT nonce=zzz name=x exit=0 seconds=1"},
		{name: "longer nonce", line: "VMTEST-DONE nonce=abc1234"},
		{name: "no nonce", line: "VMTEST-RESULT name=x exit=0 seconds=1"},
		{name: "bad exit", line: "VMTEST-RESULT nonce=abc123 name=x exit=zero seconds=1", wantOK: true, wantErr: "field exit"},
		{name: "missing seconds", line: "VMTEST-RESULT nonce=abc123 name=x exit=0", wantOK: true, wantErr: "missing field seconds"},
		{name: "bad name", line: "VMTEST-RESULT nonce=abc123 name=a\"b exit=0 seconds=1", wantOK: true, wantErr: "invalid name"},
		{name: "unknown field", line: "VMTEST-RESULT nonce=abc123 name=x exit=0 seconds=1 foo=1", wantOK: true, wantErr: "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := ParseLine(nonce, tt.line)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tt.wantOK)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFormatRoundTrip(t *testing.T) {
	tests := []Result{
		{Name: "receiver.test/cgroup", Exit: 0, Seconds: 12.5},
		{Name: "a", Exit: 137, Seconds: 0},
		{Name: "x:y+z,1", Exit: -1, Seconds: 3.14},
	}
	for _, r := range tests {
		t.Run(r.Name, func(t *testing.T) {
			l, ok, err := ParseLine("n", FormatResult("n", r))
			if !ok || err != nil || l.Kind != ResultMarker || l.Result != r {
				t.Fatalf("ParseLine(FormatResult(%+v)) = %+v, %v, %v", r, l, ok, err)
			}
		})
	}
	if l, ok, err := ParseLine("n", FormatDone("n")); !ok || err != nil || l.Kind != DoneMarker {
		t.Fatalf("done line: %+v, %v, %v", l, ok, err)
	}
	if l, ok, err := ParseLine("n", FormatError("n", "a\nb")); !ok || err != nil || l.Message != "a b" {
		t.Fatalf("error line: %+v, %v, %v", l, ok, err)
	}
}

func TestValidName(t *testing.T) {
	tests := map[string]bool{
		"bpf.test/lsm": true, "a_b-c:d+e,f": true, "": false, "a b": false, "a=b": false, "ä": false,
	}
	for name, want := range tests {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}
