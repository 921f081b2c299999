package main

import (
	"reflect"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "/tests/a.test -test.v", want: []string{"/tests/a.test", "-test.v"}},
		{in: "  /bin/sh  -c 'test -x /bin/x && echo \"ok\"' ", want: []string{"/bin/sh", "-c", "test -x /bin/x && echo \"ok\""}},
		{in: `/bin/echo "a b" c\ d '' x`, want: []string{"/bin/echo", "a b", "c d", "", "x"}},
		{in: `/bin/echo 'it''s'`, want: []string{"/bin/echo", "its"}},
		{in: "", want: nil},
		{in: "/bin/sh -c 'oops", wantErr: true},
		{in: `/bin/echo \`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := splitArgs(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("splitArgs(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
