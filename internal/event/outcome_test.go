package event

import (
	"encoding/binary"
	"errors"
	"testing"
)

// rawOutcome builds an outcome record in the C layout (bpf/tcpconnect.h).
func rawOutcome(why, oldState, newState, sockState uint8, err int32) []byte {
	return rawOutcomeSoft(why, oldState, newState, sockState, err, 0)
}

func rawOutcomeSoft(why, oldState, newState, sockState uint8, err int32, soft uint8) []byte {
	raw := make([]byte, OutcomeSize)
	raw[0], raw[1], raw[2], raw[3], raw[4], raw[5] = TypeOutcome, why, oldState, newState, sockState, soft
	le := binary.LittleEndian
	le.PutUint32(raw[8:], uint32(err))
	le.PutUint32(raw[12:], 77)
	le.PutUint64(raw[16:], 1000)
	le.PutUint64(raw[24:], 3500)
	return raw
}

func TestOutcomeKind(t *testing.T) {
	const synSent, ssConnecting, noSocket = 2, 3, 0xff
	tests := []struct {
		name    string
		raw     []byte
		want    Kind
		errType string
	}{
		{"established", rawOutcome(WhyState, synSent, tcpEstablished, ssConnecting, 0), KindEstablished, ""},
		{"simultaneous open", rawOutcome(WhyState, 3, tcpEstablished, ssConnecting, 0), KindEstablished, ""},
		{"refused", rawOutcome(WhyState, synSent, tcpClose, ssConnecting, 111), KindRefused, "ECONNREFUSED"},
		{"timeout", rawOutcome(WhyState, synSent, tcpClose, ssConnecting, 110), KindTimeout, "ETIMEDOUT"},
		{"host unreachable", rawOutcome(WhyState, synSent, tcpClose, ssConnecting, 113), KindUnreachable, "EHOSTUNREACH"},
		{"network unreachable", rawOutcome(WhyState, synSent, tcpClose, ssConnecting, 101), KindUnreachable, "ENETUNREACH"},
		{"reset", rawOutcome(WhyState, 3, tcpClose, ssConnecting, 104), KindReset, "ECONNRESET"},
		{"soft error, then closed", rawOutcomeSoft(WhyState, synSent, tcpClose, ssConnecting, 0, 113), KindUnreachable, "EHOSTUNREACH"},
		{"hard error wins", rawOutcomeSoft(WhyState, synSent, tcpClose, ssConnecting, 110, 113), KindTimeout, "ETIMEDOUT"},
		{"closed by the application", rawOutcome(WhyState, synSent, tcpClose, ssConnecting, 0), KindClosed, ""},
		{"closed, socket gone", rawOutcome(WhyState, synSent, tcpClose, noSocket, 0), KindClosed, ""},
		{"failed inside connect", rawOutcome(WhyState, synSent, tcpClose, ssUnconnected, 0), KindDenied, OtherError},
		{"destroyed before leaving CLOSE", rawOutcome(WhyDestroyed, tcpClose, tcpClose, noSocket, 0), KindDenied, OtherError},
		{"connected again", rawOutcome(WhyReconnect, tcpClose, tcpClose, noSocket, 0), KindDenied, OtherError},
		{"state change not reported", rawOutcome(WhyMissed, tcpClose, tcpClose, noSocket, 0), KindPending, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o Outcome
			if err := DecodeOutcome(tt.raw, &o); err != nil {
				t.Fatal(err)
			}
			if o.TID != 77 || o.ConnectBootNs != 1000 || o.BootTimeNs != 3500 {
				t.Fatalf("decoded %+v", o)
			}
			if got := o.Kind(); got != tt.want {
				t.Errorf("Kind() = %s, want %s", got, tt.want)
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
	if err := DecodeOutcome(rawOutcome(9, 2, 7, 3, 0), &o); err == nil {
		t.Error("unknown reason decoded without error")
	}
	bad := rawOutcome(WhyState, 2, 7, 3, 0)
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
