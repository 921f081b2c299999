package bpf

import "fmt"

// Counters are the kernel's counters (map "counters", enum tc_counter),
// summed over CPUs: the records it dropped, and the events that are no
// loss.
type Counters struct {
	// Lost counts what the kernel could not report.
	Lost Lost
	// Filtered counts connects the user's filters left out.
	Filtered uint64
	// AggOverflow counts connects that found the aggregation window map
	// full and were reported one by one, flagged (event.Connect.AggOverflow).
	AggOverflow uint64
	// AggLateOutcomes counts outcomes of connects that aggregation counted,
	// which came after their window had ended: those connects went out in
	// their summary as pending, and the late outcome is only counted here.
	AggLateOutcomes uint64
}

// Lost counts records the kernel dropped and state changes it did not
// report.
type Lost struct {
	// Connect and DNS count records that found the ring full.
	Connect uint64
	DNS     uint64
	// DNSCopy counts DNS records dropped because copying the packet's
	// payload into the record failed.
	DNSCopy uint64
	// Outcome counts outcome records that found the ring full: their
	// connects go out pending.
	Outcome uint64
	// OutcomeMissed counts runs of the outcome programs that the kernel
	// skipped because the program was already running on that CPU (a
	// softirq's state change while it ran for another socket): state
	// changes not reported. Kernels before 5.12 do not count them.
	OutcomeMissed uint64
	// FirstBytes counts first-bytes captures cut short: the ring was full,
	// copying a segment failed, or a segment was missing.
	FirstBytes uint64
}

// Counters reads the kernel's counters.
func (p *Probe) Counters() (Counters, error) {
	var c Counters
	for _, f := range [...]struct {
		i   connectTcCounter // enum tc_counter, as bpf2go generated it
		dst *uint64
	}{
		{connectTcCounterTC_LOST_CONNECT, &c.Lost.Connect},
		{connectTcCounterTC_LOST_DNS, &c.Lost.DNS},
		{connectTcCounterTC_LOST_DNS_COPY, &c.Lost.DNSCopy},
		{connectTcCounterTC_LOST_OUTCOME, &c.Lost.Outcome},
		{connectTcCounterTC_LOST_FIRST_BYTES, &c.Lost.FirstBytes},
		{connectTcCounterTC_COUNT_FILTERED, &c.Filtered},
		{connectTcCounterTC_COUNT_AGG_OVERFLOW, &c.AggOverflow},
		{connectTcCounterTC_COUNT_AGG_LATE_OUTCOME, &c.AggLateOutcomes},
	} {
		var perCPU []uint64
		if err := p.counters.Lookup(uint32(f.i), &perCPU); err != nil {
			return Counters{}, fmt.Errorf("read kernel counter %d: %w", f.i, err)
		}
		for _, v := range perCPU {
			*f.dst += v
		}
	}
	for _, prog := range p.outcomeProgs {
		s, err := prog.Stats()
		if err != nil {
			return Counters{}, fmt.Errorf("read outcome program stats: %w", err)
		}
		c.Lost.OutcomeMissed += s.RecursionMisses
	}
	return c, nil
}
