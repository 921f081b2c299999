package bpf

import (
	"testing"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// TestOutcomeKindValues: event.Kind numbers the outcomes as enum
// tc_outcome_kind does (outcome records carry the kernel's number, and the
// aggregation counts sit at its index), and the summary has one count per
// kind (TC_OUTCOME_KINDS).
func TestOutcomeKindValues(t *testing.T) {
	kernel := map[outcomeTcOutcomeKind]event.Kind{
		outcomeTcOutcomeKindTC_KIND_ESTABLISHED: event.KindEstablished,
		outcomeTcOutcomeKindTC_KIND_REFUSED:     event.KindRefused,
		outcomeTcOutcomeKindTC_KIND_TIMEOUT:     event.KindTimeout,
		outcomeTcOutcomeKindTC_KIND_UNREACHABLE: event.KindUnreachable,
		outcomeTcOutcomeKindTC_KIND_RESET:       event.KindReset,
		outcomeTcOutcomeKindTC_KIND_DENIED:      event.KindDenied,
		outcomeTcOutcomeKindTC_KIND_CLOSED:      event.KindClosed,
		outcomeTcOutcomeKindTC_KIND_PENDING:     event.KindPending,
	}
	for c, k := range kernel {
		if uint32(c) != uint32(k) {
			t.Errorf("kernel kind %d is event.Kind %d (%s)", c, k, k)
		}
	}
	if len(kernel) != aggOutcomeKinds {
		t.Errorf("%d kernel kinds, %d summary counts (aggOutcomeKinds)", len(kernel), aggOutcomeKinds)
	}
}
