package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/tcpconnect/tcpconnect/internal/event"
)

// Bounds of the aggregation window maps (aggregate.bpf.h): each of the two
// maps holds up to this many keys, preallocated (about 300 bytes a key).
const (
	// DefaultAggregateKeys is the keys per window when none is configured.
	DefaultAggregateKeys = 16384
	// MaxAggregateKeys is the most keys per window the loader accepts
	// (two maps of about 80 MB each).
	MaxAggregateKeys = 1 << 18
)

// Sizes of struct tc_agg_key and struct tc_agg_value (tcpconnect.h).
const (
	aggKeySize   = 40
	aggValueSize = event.ConnectSize + 16 + 4*aggOutcomeKinds
	// aggOutcomeKinds is TC_OUTCOME_KINDS: outcome counts by event.Kind - 1,
	// KindEstablished to KindPending.
	aggOutcomeKinds = 8
)

// drainChunk is the most window map entries one batched read
// (BPF_MAP_LOOKUP_AND_DELETE_BATCH) returns: 16384 keys take 16 calls, and
// the buffers hold about 240 KB (1024 keys and values).
const drainChunk = 1024

// aggStopped (TC_AGG_STOPPED) is the window generation that stops
// aggregating: every connect is reported on its own. Below it, a
// generation's bit 0 selects the window map.
const aggStopped = 1 << 31

// Entries of agg_state (enum tc_agg_state_index): the window generation,
// and whether window map 0 (1: map 1) was found full in its window.
const (
	aggStateGeneration uint32 = 0
	aggStateFull0      uint32 = 1
)

// AggregateSummary is one key's connects counted in a window and not
// reported by a record of their own.
type AggregateSummary struct {
	// First is the raw record of the key's first connect in the window
	// (decode it with event.DecodeConnect). When its ring reservation
	// failed, it was not reported and is included in Count.
	First [event.ConnectSize]byte
	// Count is the connects counted (at least 1).
	Count uint64
	// LastNs is the CLOCK_BOOTTIME of the latest of them.
	LastNs uint64
	// Outcomes counts the outcomes of those connects that came before the
	// window ended, by event.Kind - 1 (outcome tracking on; the rest were
	// pending at the window's end).
	Outcomes [aggOutcomeKinds]uint32
}

// Outcome returns the connects of outcome k counted in the window.
func (s *AggregateSummary) Outcome(k event.Kind) uint32 {
	if k < 1 || int(k) > len(s.Outcomes) {
		return 0
	}
	return s.Outcomes[k-1]
}

// aggregator is the loader's side of the window maps.
type aggregator struct {
	windows *ebpf.Map    // agg_windows: array of maps, used for its RCU wait
	maps    [2]*ebpf.Map // agg_win0, agg_win1
	state   *ebpf.Map    // agg_state: the window generation, the full flags
	gen     uint32       // the generation in use (bit 0: its map); aggStopped after Stop

	// The batched drain's buffers, allocated by the first drain and kept:
	// chunk entries each (drainChunk or the map's size, whichever is
	// smaller), grown only when a hash bucket does not fit (ENOSPC).
	// batchKeys and batchVals as interfaces, converted once.
	batchKeys    [][aggKeySize]byte
	batchVals    [][aggValueSize]byte
	batchKeysAny any
	batchValsAny any
	cursor       ebpf.MapBatchCursor
	chunk        int                // entries per batched read; 0 is drainChunk (tests set it)
	noBatch      bool               // the kernel has no batch operations: iterate and delete
	batchGrown   int                // times a bucket did not fit and the buffers grew (tests read it)
	keys         [][aggKeySize]byte // the iterating drain's keys to delete
}

// setAggregateSpec sizes the window maps and sets agg_enabled and
// agg_outcomes. Off, the maps hold one entry each and the verifier drops the
// counting code.
func setAggregateSpec(spec *ebpf.CollectionSpec, opts Options) error {
	enabled, keys, outcomes := uint32(0), uint32(1), uint32(0)
	if opts.Aggregate && opts.Outcome && !opts.AggregateSkipOutcomes {
		outcomes = 1
	}
	if opts.Aggregate {
		n := opts.AggregateKeys
		if n == 0 {
			n = DefaultAggregateKeys
		}
		if n < 1 || n > MaxAggregateKeys {
			return fmt.Errorf("aggregation keys %d: must be between 1 and %d", n, MaxAggregateKeys)
		}
		enabled, keys = 1, uint32(n)
	}
	if err := spec.Variables["agg_enabled"].Set(enabled); err != nil {
		return fmt.Errorf("set agg_enabled: %w", err)
	}
	if err := spec.Variables["agg_outcomes"].Set(outcomes); err != nil {
		return fmt.Errorf("set agg_outcomes: %w", err)
	}
	// The inner map template must match the maps put into the array.
	for _, m := range []*ebpf.MapSpec{spec.Maps["agg_win0"], spec.Maps["agg_win1"], spec.Maps["agg_windows"].InnerMap} {
		m.MaxEntries = keys
	}
	return nil
}

// FlushAggregate ends the aggregation window: the programs move to the other
// window map, the call waits until none still runs on the old one (an RCU
// grace period, some milliseconds), then calls fn for each key of the old
// map that counted connects and empties it. With stop set, aggregation ends
// instead (every later connect is reported on its own) and both maps are
// flushed: nothing counted stays behind. fn must not keep s. It returns
// the number of summaries.
func (p *Probe) FlushAggregate(stop bool, fn func(s *AggregateSummary)) (int, error) {
	a := p.agg
	if a == nil {
		return 0, errors.New("aggregation is off")
	}
	old := []uint32{a.gen & 1}
	// A new generation each window, so that an outcome counted for an
	// ended one is late even when its map is in use again.
	next := (a.gen + 1) &^ aggStopped
	if stop || a.gen == aggStopped {
		old, next = []uint32{0, 1}, aggStopped
	}
	if err := a.state.Update(uint32(aggStateGeneration), next, ebpf.UpdateAny); err != nil {
		return 0, fmt.Errorf("set the aggregation window generation: %w", err)
	}
	a.gen = next
	// Re-storing a slot of an array of maps makes the kernel wait for every
	// program that may still use the old value (synchronize_rcu).
	if err := a.windows.Update(uint32(0), a.maps[0], ebpf.UpdateAny); err != nil {
		return 0, fmt.Errorf("wait for the window's programs: %w", err)
	}
	n := 0
	for _, w := range old {
		k, err := a.drain(a.maps[w], fn)
		n += k
		if err != nil {
			return n, fmt.Errorf("flush aggregation window %d: %w", w, err)
		}
		// Emptied: new keys may be inserted again when its turn comes.
		if err := a.state.Update(aggStateFull0+w, uint32(0), ebpf.UpdateAny); err != nil {
			return n, fmt.Errorf("clear aggregation window %d's full flag: %w", w, err)
		}
	}
	return n, nil
}

// drain calls fn for each entry of m with a count and deletes every entry.
// No program writes m while it runs (FlushAggregate). It reads and deletes
// the entries in batches (a syscall per chunk of entries, not three per
// entry), or, where the kernel has no batch operations, one by one.
func (a *aggregator) drain(m *ebpf.Map, fn func(*AggregateSummary)) (int, error) {
	if a.noBatch {
		return a.drainIterate(m, fn)
	}
	n, err := a.drainBatch(m, fn)
	if errors.Is(err, ebpf.ErrNotSupported) {
		// cilium/ebpf says so when its probe of the batch operations
		// fails, on the first call: read the rest one by one, from now on.
		a.noBatch = true
		k, err := a.drainIterate(m, fn)
		return n + k, err
	}
	return n, err
}

// drainBatch reads and deletes m's entries with
// BPF_MAP_LOOKUP_AND_DELETE_BATCH until the map's last bucket.
func (a *aggregator) drainBatch(m *ebpf.Map, fn func(*AggregateSummary)) (int, error) {
	if a.batchKeys == nil {
		chunk := a.chunk
		if chunk <= 0 {
			chunk = drainChunk
		}
		a.growBatch(min(chunk, int(m.MaxEntries())))
	}
	var s AggregateSummary
	n := 0
	// A fresh cursor starts at the first bucket (its first call allocates
	// the cursor's few bytes: one allocation per window).
	a.cursor = ebpf.MapBatchCursor{}
	for {
		got, err := m.BatchLookupAndDelete(&a.cursor, a.batchKeysAny, a.batchValsAny, nil)
		// The entries returned count even with ErrKeyNotExist: the last
		// chunk comes with it.
		for i := range got {
			decodeAggValue(a.batchVals[i][:], &s)
			if s.Count > 0 {
				fn(&s)
				n++
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return n, nil
		case errors.Is(err, unix.ENOSPC) && got == 0 && len(a.batchKeys) < int(m.MaxEntries()):
			// The next bucket holds more entries than a chunk (the kernel
			// returns whole buckets). The cursor still points at it: retry
			// with room for twice as many. A bucket holds at most the
			// map's entries.
			a.growBatch(min(2*len(a.batchKeys), int(m.MaxEntries())))
			a.batchGrown++
		default:
			return n, fmt.Errorf("batch lookup and delete: %w", err)
		}
	}
}

// growBatch (re)allocates the batched drain's buffers for n entries.
func (a *aggregator) growBatch(n int) {
	a.batchKeys = make([][aggKeySize]byte, n)
	a.batchVals = make([][aggValueSize]byte, n)
	a.batchKeysAny, a.batchValsAny = a.batchKeys, a.batchVals
}

// drainIterate is drain one entry at a time: a NextKey and a Lookup per
// entry, then a Delete per key.
func (a *aggregator) drainIterate(m *ebpf.Map, fn func(*AggregateSummary)) (int, error) {
	var (
		key [aggKeySize]byte
		val [aggValueSize]byte
		s   AggregateSummary
		n   int
	)
	a.keys = a.keys[:0]
	it := m.Iterate()
	for it.Next(&key, &val) {
		a.keys = append(a.keys, key)
		decodeAggValue(val[:], &s)
		if s.Count > 0 {
			fn(&s)
			n++
		}
	}
	if err := it.Err(); err != nil {
		return n, fmt.Errorf("iterate: %w", err)
	}
	for i := range a.keys {
		if err := m.Delete(&a.keys[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, fmt.Errorf("delete: %w", err)
		}
	}
	return n, nil
}

// decodeAggValue fills s from a window map's value (struct tc_agg_value).
func decodeAggValue(val []byte, s *AggregateSummary) {
	copy(s.First[:], val[:event.ConnectSize])
	s.Count = binary.LittleEndian.Uint64(val[event.ConnectSize:])
	s.LastNs = binary.LittleEndian.Uint64(val[event.ConnectSize+8:])
	for i := range s.Outcomes {
		s.Outcomes[i] = binary.LittleEndian.Uint32(val[event.ConnectSize+16+4*i:])
	}
}
