package event

import (
	"encoding/binary"
	"errors"
	"testing"
)

// rawOutcome builds an outcome record in the C layout (bpf/tcpconnect.h)
// of a state change to CLOSE whose kind the kernel decided.
func rawOutcome(why uint8, kind Kind, err int32) []byte {
	raw := make([]byte, OutcomeSize)
	raw[0], raw[1], raw[2], raw[3], raw[4], raw[5] = TypeOutcome, why, 2, 7, 3, uint8(kind)
	le := binary.LittleEndian
	le.PutUint32(raw[8:], uint32(err))
	le.PutUint32(raw[12:], 77)
	le.PutUint64(raw[16:], 1000)
	le.PutUint64(raw[24:], 3500)
	return raw
}

// TestDecodeOutcome: the kind is the kernel's, decoded as it is; error.type
// names the errno of a failure, _OTHER for a failure without one, and is
// empty for an outcome that is no failure, whatever errno it carries.
func TestDecodeOutcome(t *testing.T) {
	tests := []struct {
		name    string
		kind    Kind
		err     int32
		errType string
	}{
		{"established", KindEstablished, 0, ""},
		{"refused", KindRefused, 111, "ECONNREFUSED"},
		{"timeout", KindTimeout, 110, "ETIMEDOUT"},
		{"host unreachable", KindUnreachable, 113, "EHOSTUNREACH"},
		{"network unreachable", KindUnreachable, 101, "ENETUNREACH"},
		{"reset", KindReset, 104, "ECONNRESET"},
		{"denied, no errno", KindDenied, 0, OtherError},
		{"failure with an errno unknown to Go", KindUnreachable, 4095, OtherError},
		{"closed", KindClosed, 0, ""},
		{"closed, errno ignored", KindClosed, 113, ""},
		{"pending", KindPending, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o Outcome
			if err := DecodeOutcome(rawOutcome(WhyState, tt.kind, tt.err), &o); err != nil {
				t.Fatal(err)
			}
			want := Outcome{Why: WhyState, OldState: 2, NewState: 7, SockState: 3, Kind: tt.kind, Err: tt.err,
				TID: 77, ConnectBootNs: 1000, BootTimeNs: 3500}
			if o != want {
				t.Fatalf("decoded %+v, want %+v", o, want)
			}
			if got := o.ErrorType(); got != tt.errType {
				t.Errorf("ErrorType() = %q, want %q", got, tt.errType)
			}
		})
	}
}

func TestDecodeOutcomeErrors(t *testing.T) {
	var o Outcome
	if err := DecodeOutcome(make([]byte, OutcomeSize-1), &o); !errors.Is(err, ErrShort) {
		t.Errorf("short record: %v, want ErrShort", err)
	}
	if err := DecodeOutcome(rawOutcome(9, KindClosed, 0), &o); err == nil {
		t.Error("unknown reason decoded without error")
	}
	for _, k := range []Kind{KindNone, KindPending + 1} {
		if err := DecodeOutcome(rawOutcome(WhyState, k, 0), &o); err == nil {
			t.Errorf("kind %d decoded without error", k)
		}
	}
	bad := rawOutcome(WhyState, KindClosed, 0)
	bad[0] = TypeConnect
	if err := DecodeOutcome(bad, &o); err == nil {
		t.Error("connect record decoded as an outcome")
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindNone: "", KindEstablished: "established", KindPending: "pending", KindDenied: "denied", Kind(42): "kind(42)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}
